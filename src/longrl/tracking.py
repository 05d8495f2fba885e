"""Run directories: resolved config, metrics.jsonl (each step exactly once), sample dumps, timers.

    check_run_dir("runs/x", cfg)                  # before any work: refuses a different config, writes nothing
    out = prepare_run_dir("runs/x", cfg)          # the run starts: runs/x/config.yaml, runs/x/log.txt
    metrics = MetricsLog(out / "metrics.jsonl", resume_step=state.get("step"))
    timers = Timers()
    with timers.time("rollout"):
        ...
    metrics.log({"step": 3, "phase": "p1", **timers.pop()})
    with StepProgress(total=8, start=2, mode=cfg.run.progress) as progress:
        progress.update(3, row)                  # a live bar, the step's key metrics on the line below

Rerunning a command on the same directory resumes it, so a directory whose config.yaml differs
from the new config is refused (use a new --out, or delete the directory), unless the run there
made no progress at all (nothing but config.yaml, log.txt and empty files or folders: a start that
failed at its first step): then the new config replaces it.

One run per directory: a command holds an exclusive lock on `DIR/.lock` (`fcntl.flock`) from the
moment it finds the directory (`check_run_dir`, or `prepare_run_dir` for a new one) until the stage
returns (`holds_run_dir`) or the process ends. A second command on the same directory exits 2 at
once, naming the process that holds it, and changes no file. The lock dies with its process (a
killed run leaves no stale lock: the next command takes it over); a process may take its own lock
again (a pipeline's stages run inside its directory, each in a folder of its own with its own
lock). Under torchrun rank 0 holds it for all ranks. `.lock` records the holder (pid, host, start,
command) once the run starts. Settings present on
one side only (added by a newer longrl) and display settings (DISPLAY_KEYS: progress, trackers, metric_names)
do not count as differences. Preparing a directory again removes what a killed write left in it
(`.NAME.XXXX.tmp` files and folders in the run directory, `checkpoints/` and `samples/`).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from longrl.console import (
    plain_progress,
    progress_kind,
    secondary_rank,
    start_run_log,
    stderr_console,
    step_boundaries,
    stop_at_step_end,
)
from longrl.errors import ConfigError, OutputError, UserError
from longrl.files import atomic_open, atomic_write_text, explain, make_dirs, remove_leftovers, umask
from longrl.limits import load_json, load_yaml, read_small_file
from longrl.secrets import scrub_urls
from longrl.trackers import Trackers


def to_yaml(cfg) -> str:
    """A config (any pydantic model) as the YAML written to `config.yaml`: URL credentials shown as ***."""
    return yaml.safe_dump(scrub_urls(cfg.model_dump(mode="json")), sort_keys=False, allow_unicode=True)


# Settings that change what a run shows, not what it computes: a resume may change them.
DISPLAY_KEYS = {"run.progress", "run.log_every", "run.trackers", "run.wandb_project", "run.metric_names"}


LOCK = ".lock"                          # the run directory's lock file (see the module docstring)
RECORDS = {"config.yaml", "log.txt", LOCK}  # what a start writes before its first step
_HELD: dict[str, int] = {}               # resolved run directory -> the open, locked .lock file descriptor


class RunDirBusy(UserError):
    """Another process holds the run directory's lock (a run is going on there)."""


def recorded_config(existing: Path):
    """The config a run directory recorded (bounded YAML, a small regular file); ConfigError when it is unreadable."""
    try:
        return load_yaml(read_small_file(existing).decode("utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:  # UnicodeDecodeError and LimitError are ValueErrors
        raise ConfigError(f"{existing}: the recorded config of this run is unreadable ({exc}); "
                          "use another --out, or delete that file to start the run again") from None


def made_progress(out: Path, limit: int = 10_000) -> bool:
    """Whether a run directory holds anything besides its records (config.yaml, log.txt, .lock) and empty
    files or folders; more than `limit` entries count as progress without looking further."""
    seen = 0
    for folder, dirs, files in os.walk(out):
        seen += len(dirs) + len(files)
        if seen > limit:
            return True
        for name in files:
            path = Path(folder) / name
            if Path(folder) == out and name in RECORDS:
                continue
            with contextlib.suppress(OSError):
                if path.is_symlink() or path.stat().st_size > 0:
                    return True
    return False


def check_run_dir(out: str | Path, cfg) -> Path:
    """Refuse a directory whose config.yaml differs from `cfg` (ConfigError), or that another process
    is running in (RunDirBusy); then hold its lock. Writes nothing.

    Called before any work, so a refused rerun changes nothing; `prepare_run_dir` writes once the run
    starts for real (models and data loaded), so a start that fails leaves no config.yaml behind. A
    directory whose run made no progress (`made_progress`) takes the new config instead of refusing it.
    """
    out = Path(out)
    if out.is_dir():
        lock_run_dir(out)                # first: a directory in use is refused whatever its config
    existing = out / "config.yaml"
    if existing.exists() or existing.is_symlink():
        changed = sorted(set(_diff_keys(recorded_config(existing), yaml.safe_load(to_yaml(cfg)))) - DISPLAY_KEYS)
        if changed and made_progress(out):
            raise ConfigError(f"{out} holds a run with a different config (changed: {', '.join(changed[:8])}); "
                              "use another --out to start a new run, or the same config to resume")
    return out


def lock_run_dir(out: str | Path) -> None:
    """Hold the exclusive lock of run directory `out` (which exists) for this process; RunDirBusy when
    another process holds it. A lock this process holds already is kept; ranks other than 0 take none."""
    out = Path(out)
    key = str(out.resolve())
    if key in _HELD or secondary_rank():
        return
    path = out / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666 & ~umask())
    except OSError as exc:
        raise OutputError(str(path), explain(path, exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirBusy(f"{out} is in use by {describe_holder(path)}; wait for it to end (or stop it), "
                         "or use another --out") from None
    except OSError as exc:           # a filesystem without locks: say so rather than run unguarded
        os.close(fd)
        raise OutputError(str(path), f"cannot lock it ({exc.strerror or exc})") from None
    _HELD[key] = fd


def record_holder(out: str | Path) -> None:
    """Write who holds the lock of `out` (pid, host, start, command) into its .lock file (lock held)."""
    fd = _HELD.get(str(Path(out).resolve()))
    if fd is None:
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if load_json(os.pread(fd, 1 << 16, 0)).get("pid") == os.getpid():
            return                       # recorded by this process already (a stage run again in-process)
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(["longrl", *sys.argv[1:]])[:500]}
    data = (json.dumps(info) + "\n").encode()
    with contextlib.suppress(OSError):   # a courtesy for the message of a refused command, never fatal
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def describe_holder(path: Path) -> str:
    """'another longrl process (pid 123 on host, since ..., running: longrl rl ...)' from the lock's record
    and, on Linux, /proc/locks (which knows the holder's pid even before it wrote its record)."""
    record: dict = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = load_json(read_small_file(path, 1 << 16))
        record = loaded if isinstance(loaded, dict) else {}
    pid = flock_holder(path) or record.get("pid")
    if pid is None:
        return "another process"
    parts = [f"pid {pid}" + (f" on {record['host']}" if record.get("pid") == pid and record.get("host") else "")]
    if record.get("pid") == pid:
        parts += [f"since {record['since']}" if record.get("since") else "", record.get("command") or ""]
    return "another longrl process (" + ", ".join(p for p in parts if p) + ")"


def flock_holder(path: Path) -> int | None:
    """The pid holding a flock on `path` according to /proc/locks (Linux), or None."""
    try:
        info = os.stat(path)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    inode = f":{info.st_ino}"
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}{inode}"
    for line in lines:
        fields = line.split()
        if "FLOCK" in fields and len(fields) >= 6 and fields[-3] == device:
            with contextlib.suppress(ValueError):
                return int(fields[-4])
    return None


def release_run_dir(out: str | Path) -> None:
    """Give up this process's lock of `out` (nothing if it holds none)."""
    fd = _HELD.pop(str(Path(out).resolve()), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)                 # closing the descriptor releases the flock


def release_all_run_dirs() -> None:
    """Give up every run-directory lock this process holds (the command line's end)."""
    for key in list(_HELD):
        release_run_dir(key)


F = TypeVar("F", bound=Callable[..., Any])


def holds_run_dir(fn: F) -> F:
    """Decorate a stage's entry point: the run-directory locks it takes are given up when it returns or
    raises (those held before the call stay held)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = set(_HELD)
        try:
            return fn(*args, **kwargs)
        finally:
            for key in set(_HELD) - before:
                release_run_dir(key)
    return wrapper  # type: ignore[return-value]


def prepare_run_dir(out: str | Path, cfg) -> Path:
    """Create the run directory, lock it, write config.yaml and open its log.txt: the run starts for real.

    Refuses a directory that holds a run with a different config (`check_run_dir`), or that another process
    holds. Settings present on one side only (added by a newer longrl) are recorded, not refused.
    """
    out = make_dirs(check_run_dir(out, cfg))
    lock_run_dir(out)
    if secondary_rank():                 # under torchrun rank 0 alone tidies, records the config and logs
        return out
    record_holder(out)
    for folder in (out, out / "checkpoints", out / "samples"):  # temporaries of writes a kill interrupted
        remove_leftovers(folder)
    text = to_yaml(cfg)
    existing = out / "config.yaml"
    if not existing.exists() or recorded_config(existing) != yaml.safe_load(text):
        atomic_write_text(existing, text)
    start_run_log(out)
    return out


def _diff_keys(old, new, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ. A key on one side only is a setting added or retired by
    another longrl version, not a change the user made: it does not block a resume."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = []
        for k in sorted(set(old) & set(new)):
            keys += _diff_keys(old[k], new[k], f"{prefix}{k}.")
        return keys
    return [prefix.rstrip(".")] if old != new else []


class MetricsLog:
    """Append-only JSONL of per-step metrics, forwarded to the run's experiment trackers (if any).

    On resume from a checkpoint taken after step `resume_step`, lines of later steps (logged
    after that checkpoint, about to be redone) are dropped first, so each step appears once.
    A torn last line (a kill mid-write) is dropped too. With `write=False` (ranks other than 0
    under torchrun) nothing is read or written.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None, trackers: Trackers | None = None,
                 write: bool = True):
        self.path = Path(path)
        self._fh = None
        self.trackers = None
        if not write:               # not the writing rank: the log neither touches the file nor writes
            return
        kept = [row for row in read_metrics(self.path) if resume_step is not None and row.get("step", -1) <= resume_step]
        with atomic_open(self.path, "w") as fh:
            for row in kept:
                fh.write(json.dumps(row) + "\n")
        self._fh = open(self.path, "a", encoding="utf-8")
        self.trackers = trackers
        if trackers is not None:
            trackers.start(resume_step)

    def log(self, row: dict[str, Any]) -> None:
        """Append `row` (flushed), then send it to the trackers: metrics.jsonl is the source of truth."""
        if self._fh is None:
            return
        row = {k: _jsonable(v) for k, v in row.items()}
        try:
            self._fh.write(json.dumps(row) + "\n")
            self._fh.flush()
        except OSError as exc:  # a full disk: say which file (a write to an open file has no name)
            raise OutputError(str(self.path), explain(self.path, exc)) from None
        if self.trackers is not None:
            self.trackers.log(row)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self.trackers is not None:
            self.trackers.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl (a torn or corrupt line, or one that is not UTF-8, is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            row = load_json(line)
        except ValueError:  # not UTF-8, not JSON, or nested past longrl.limits
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Timers:
    """Wall-clock time per named phase of a step, reported as `time/<name>` seconds."""

    def __init__(self):
        self._totals: dict[str, float] = {}

    @contextlib.contextmanager
    def time(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._totals[name] = self._totals.get(name, 0.0) + time.perf_counter() - start

    def pop(self) -> dict[str, float]:
        out = {f"time/{k}": round(v, 4) for k, v in self._totals.items()}
        self._totals = {}
        return out


def dump_samples(run_dir: str | Path, step: int, rows: list[dict[str, Any]]) -> Path:
    """Write one step's rollouts to `samples/step-00000012.jsonl` (atomic)."""
    path = Path(run_dir) / "samples" / f"step-{step:08d}.jsonl"
    with atomic_open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# (metric key, label, format) shown on the progress line, when present in the row.
PROGRESS_FIELDS = [
    ("reward/mean", "reward", "{:.3f}"),
    ("accuracy", "acc", "{:.2f}"),
    ("entropy", "ent", "{:.3f}"),
    ("kl", "kl", "{:.4f}"),
    ("response_len/mean", "len", "{:.0f}"),
    ("filtered_groups_frac", "filtered", "{:.2f}"),
    ("loss/total", "loss", "{:.4f}"),
    ("tokens_per_s", "tok/s", "{:.0f}"),
    ("time/step", "s/step", "{:.1f}"),
]


# The progress fields a narrow terminal drops first, in that order; tok/s and s/step are never dropped.
PROGRESS_DROP_ORDER = ["loss/total", "kl", "entropy", "filtered_groups_frac", "response_len/mean", "accuracy",
                       "reward/mean"]
PROGRESS_SEP = "  "


def format_progress(row: dict[str, Any], fields: list[tuple[str, str, str]] = PROGRESS_FIELDS,
                    width: int | None = None) -> str:
    """`reward 0.250  acc 0.25  len 41 ...` for the fields present (and not None/NaN) in `row`. With
    `width`, fields are dropped (PROGRESS_DROP_ORDER: loss, kl, entropy, filtered, length, accuracy,
    reward) until the line fits; tok/s and s/step stay whatever the width."""
    parts = {}
    for key, label, fmt in fields:
        value = row.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            parts[key] = f"{label} {fmt.format(value)}"
    drop = [key for key in PROGRESS_DROP_ORDER if key in parts]
    while width is not None and drop and len(PROGRESS_SEP.join(parts.values())) > width:
        del parts[drop.pop(0)]
    return PROGRESS_SEP.join(parts.values())


class _BarOverMetrics(Progress):
    """A rich progress display: the bar on its own line, the step's metrics on the line below it (so the
    metrics get the terminal's whole width, fitted to it by `format_progress`)."""

    metrics = ""

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        if self.metrics:
            yield Text(self.metrics, no_wrap=True, overflow="ellipsis")


class StepProgress:
    """The live display of a training loop: a bar over steps, and the latest step's metrics on the line
    below it, as many as the terminal's width holds (`format_progress`: tok/s and s/step always).

    mode "auto" draws with rich when stderr is a terminal and prints plain lines otherwise; "rich"
    always draws; "plain" prints one line per `every` steps (logs, Slurm, CI); "none" is silent.
    LONGRL_NO_PROGRESS=1 silences all modes. The run's log.txt gets the plain line every `every`
    steps whatever the mode (`console.plain_progress`).

    It also marks the loop's step boundaries for SIGTERM (`console.step_boundaries`): a SIGTERM during
    a step stops the run at the end of `update()` of that step, once the loop has checkpointed it.
    """

    def __init__(self, total: int, start: int = 0, mode: str = "auto", description: str = "train", every: int = 1):
        self.total, self.start, self.description, self.every = total, start, description, every
        self.kind = progress_kind(mode)
        self._progress = None
        self._task = None
        self._boundaries = step_boundaries()

    def __enter__(self) -> StepProgress:
        self._boundaries.__enter__()
        if self.kind == "rich":
            self._progress = _BarOverMetrics(TextColumn("{task.description}"), BarColumn(bar_width=20),
                                             MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                             console=stderr_console(), transient=False)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, completed=self.start)
        return self

    def update(self, step: int, row: dict[str, Any]) -> None:
        if self.kind == "rich":
            self._progress.metrics = format_progress(row, width=self._progress.console.width)
            self._progress.update(self._task, completed=step)
        if step % self.every == 0 or step == self.total:        # plain lines (and the log) keep every field
            plain_progress(f"{self.description} step {step}/{self.total}  {format_progress(row)}", self.kind)
        stop_at_step_end(f"{self.description} step {step}/{self.total}")     # SIGTERM during the step: stop here

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None
        self._boundaries.__exit__(*exc)
