"""Console output: messages, progress, tables, and the run's log file.

Everything goes to stderr except results a command is asked for (tables of numbers go to stdout).
Messages are never hard-wrapped (a log keeps each message on one line, whatever the width).

Progress (`run.progress`): "auto" draws rich bars on a terminal and prints plain lines otherwise
(nohup, Slurm, CI); "rich" always draws; "plain" always prints lines; "none" is silent.
LONGRL_NO_PROGRESS=1 silences the console in every mode. Third-party bars (transformers' "Loading
weights", the hub's downloads) are shown only where longrl would draw rich bars (`hub_bars_enabled`).

The log file: the command line runs each command inside `command_log(...)`. Every line printed
through this module (messages, plain progress lines, the final error) is kept, time-stamped, and
written to `DIR/log.txt` once the run starts for real (`start_run_log(DIR)`, called when the run
directory's config.yaml is written); lines printed before that come first. A command that fails
before its run starts writes no log. Progress lines go to the log every `log_every` steps even when
the terminal shows a bar or nothing.

SIGTERM (how `timeout`, Slurm and container runtimes stop a job): inside `sigterm_stops_the_command()`
(the command line runs every command in it) SIGTERM raises `Terminated`, which the command line
reports as the log's last line before it exits with status 143 (128 + SIGTERM). Inside a training
loop (`step_boundaries()`, entered by the loop's `StepProgress`; one process only) it waits for the
end of the running step: the loop sees `stop_requested()` where it decides to checkpoint, saves,
and `stop_at_step_end` raises after it, so a rerun resumes exactly there. A step that has not ended
within LONGRL_STOP_GRACE_S seconds (default 20: under the 30 s Slurm and Kubernetes leave before
SIGKILL), or a second SIGTERM, stops the command at once; a rerun then resumes from the last
checkpoint, as after a kill. The moment SIGTERM arrives, one line says so on stderr and in the log.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

LOG_NAME = "log.txt"
PROGRESS_MODES = ("auto", "rich", "plain", "none")


class _CommandLog:
    """The lines of the running command, bound for its run directory's log.txt (one per process)."""

    def __init__(self) -> None:
        self.active = False
        self.buffer: list[str] = []
        self.file: TextIO | None = None
        self.path: Path | None = None   # the open log's path (a signal handler appends to it by its own descriptor)
        self.progress_mode = "auto"   # run.progress of the command's config (third-party bars follow it)

    def write(self, text: str) -> None:
        if not self.active:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        lines = [f"{stamp} {line}" for line in text.rstrip("\n").split("\n")]
        if self.file is not None:
            self.file.write("\n".join(lines) + "\n")
            self.file.flush()
        else:
            self.buffer += lines


_LOG = _CommandLog()


@contextlib.contextmanager
def command_log(header: str) -> Iterator[None]:
    """Keep this command's console lines for the run's log.txt (see `start_run_log`)."""
    _LOG.active, _LOG.buffer, _LOG.file = True, [], None
    _LOG.write(header)
    try:
        yield
    finally:
        if _LOG.file is not None:
            _LOG.file.close()
        _LOG.active, _LOG.buffer, _LOG.file, _LOG.path, _LOG.progress_mode = False, [], None, None, "auto"


def start_run_log(run_dir: str | Path) -> Path | None:
    """The run has started for real: open RUN_DIR/log.txt (appending) and write the lines kept so far.

    Only the command's first run directory gets a log (a pipeline's stages live inside it).
    Returns the log's path, or None when no command log is active or one is already open.
    """
    if not _LOG.active or _LOG.file is not None:
        return None
    path = Path(run_dir) / LOG_NAME
    _LOG.file, _LOG.path = open(path, "a", encoding="utf-8"), path
    if _LOG.buffer:
        _LOG.file.write("\n".join(_LOG.buffer) + "\n")
        _LOG.file.flush()
    _LOG.buffer = []
    return path


def log_only(line: str) -> None:
    """A line for the log file alone (the terminal shows the same thing another way, or nothing)."""
    _LOG.write(line)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console(width: int | None = None) -> Console:
    return Console(highlight=False, soft_wrap=True, width=width)


def set_progress_mode(mode: str) -> None:
    """The command's `run.progress`; third-party progress bars follow it (`hub_bars_enabled`)."""
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress mode must be one of {', '.join(PROGRESS_MODES)}, got {mode!r}")
    _LOG.progress_mode = mode


def secondary_rank() -> bool:
    """A torchrun process other than rank 0: it prints no progress and no messages (rank 0 speaks for all)."""
    return os.environ.get("RANK", "0") != "0"


def progress_kind(mode: str = "auto") -> str:
    """What a progress display does under `mode` here: "rich" (live bar), "plain" (lines) or "none"."""
    if mode == "none" or os.environ.get("LONGRL_NO_PROGRESS") or secondary_rank():
        return "none"
    if mode == "auto":
        return "rich" if sys.stderr.isatty() else "plain"
    return mode


def progress_enabled(mode: str = "auto") -> bool:
    return progress_kind(mode) != "none"


def hub_bars_enabled() -> bool:
    """Whether transformers / huggingface_hub may draw their tqdm bars: only where longrl draws rich bars."""
    return progress_kind(_LOG.progress_mode) == "rich"


def plain_progress(line: str, kind: str) -> None:
    """One progress line: to stderr when the display is plain, to the log file always."""
    if kind == "plain":
        print(line, file=sys.stderr, flush=True)
    _LOG.write(line)


@contextlib.contextmanager
def progress_bar(total: int | None, description: str, mode: str = "auto", lines: int = 10) -> Iterator[Any]:
    """Yields `advance(n=1)`: a rich bar on a terminal, else about `lines` plain lines over the work.

    The plain lines ("eval: 30/100 (30%), 12 s") also go to the log file whatever the display.
    """
    kind = progress_kind(mode)
    done, began, last_tenth = 0, time.perf_counter(), 0
    every = max(1, (total or 100) // max(lines, 1))

    def report() -> None:
        share = f" ({100 * done // total}%)" if total else ""
        of = f"/{total}" if total is not None else ""
        plain_progress(f"{description}: {done}{of}{share}, {time.perf_counter() - began:.0f} s", kind)

    def count(n: int) -> None:
        nonlocal done, last_tenth
        done += n
        if done // every > last_tenth or (total is not None and done == total):
            last_tenth = done // every
            report()

    if kind != "rich":
        yield lambda n=1: count(n)
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=stderr_console(), transient=True) as progress:
        task = progress.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            progress.advance(task, n)
            count(n)

        yield advance  # the bar on the terminal; plain_progress writes the log only (kind is "rich")


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A table on stdout (and in the log) whose cells are never cut short: on a terminal narrower than the
    table a cell folds onto a second line; in a pipe or a file the table keeps its full width."""
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*[_fmt(v) for v in row])
    console = stdout_console()
    full = max(console.width, console.measure(table, options=console.options.update_width(100_000)).maximum)
    (console if console.is_terminal else stdout_console(width=full)).print(table)
    if _LOG.active:
        logged = stdout_console(width=full)
        with logged.capture() as captured:
            logged.print(table)
        _LOG.write(captured.get())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def info(message: str) -> None:
    if not secondary_rank():
        stderr_console().print(message, markup=False)
        _LOG.write(message)


def error(message: str) -> None:
    """A command's final error line (stderr and the log)."""
    print(message, file=sys.stderr, flush=True)
    _LOG.write(message)


EXIT_TERMINATED = 128 + signal.SIGTERM          # 143: what a shell reports for a process SIGTERM ended
STOP_GRACE_ENV = "LONGRL_STOP_GRACE_S"
STOP_GRACE_S = 20.0
RESUME_HINT = "rerun the same command to resume"


class Terminated(BaseException):
    """SIGTERM stopped the command (`sigterm_stops_the_command`); the command line logs it and exits 143.
    A BaseException, as KeyboardInterrupt is: no `except Exception` on the way swallows it."""


class _StopState:
    """Where SIGTERM handling stands in this process."""

    def __init__(self) -> None:
        self.installed = False
        self.loops = 0                 # training loops running that stop at their step's end (`step_boundaries`)
        self.requested = False         # SIGTERM arrived inside a loop: stop at the end of the step
        self.seen = False              # ... and the loop saw it where it decides to checkpoint (`stop_requested`)
        self.late = False              # the step did not end within the grace period
        self.timer: threading.Timer | None = None

    def reset(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.requested, self.seen, self.late, self.timer = False, False, False, None


_STOP = _StopState()


def stop_grace() -> float:
    """Seconds a step may take to end after SIGTERM: LONGRL_STOP_GRACE_S, default 20."""
    try:
        value = float(os.environ.get(STOP_GRACE_ENV, STOP_GRACE_S))
    except ValueError:
        return STOP_GRACE_S
    return value if value >= 0 else STOP_GRACE_S


def _notice(line: str) -> None:
    """One line on stderr and in the log, written from a signal handler: by raw descriptor writes, never
    through a Python stream the interrupted code may be in the middle of writing."""
    text = f"{line}\n".encode()
    with contextlib.suppress(OSError):
        os.write(2, text)
    if _LOG.active and _LOG.path is not None:
        with contextlib.suppress(OSError):
            fd = os.open(_LOG.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n".encode())
            finally:
                os.close(fd)


def _grace_over() -> None:
    """The timer thread's end of the grace period: SIGTERM again, to the main thread (which stops now; a real
    signal, so a wait in a system call is cut short too)."""
    if not (_STOP.installed and _STOP.requested):
        return
    _STOP.late = True
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
    else:
        _thread.interrupt_main(signal.SIGTERM)


def _on_sigterm(signum, frame) -> None:
    if _STOP.requested:                                  # a second SIGTERM, or the grace period is over
        late = f": the step did not end within {stop_grace():g} s" if _STOP.late else ""
        raise Terminated(f"stopped by SIGTERM{late}; {RESUME_HINT} from its last checkpoint")
    if not _STOP.loops:
        raise Terminated(f"stopped by SIGTERM; {RESUME_HINT} from its last checkpoint")
    _STOP.requested = True
    grace = stop_grace()
    _STOP.timer = threading.Timer(grace, _grace_over)
    _STOP.timer.daemon = True
    _STOP.timer.start()
    _notice(f"SIGTERM: stopping at the end of this step, after its checkpoint (at most {grace:g} s; "
            f"{STOP_GRACE_ENV} sets it); a second SIGTERM stops now")


@contextlib.contextmanager
def sigterm_stops_the_command() -> Iterator[None]:
    """Within: SIGTERM raises `Terminated`, at once or, inside `step_boundaries`, at the end of the step.
    Outside the main thread (a library caller's worker) signals are left alone."""
    if _STOP.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    _STOP.installed = True
    try:
        yield
    finally:
        _STOP.reset()
        _STOP.installed = False
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def step_boundaries() -> Iterator[None]:
    """A training loop runs within: SIGTERM waits for the end of its step (see the module docstring).
    Under torchrun with several ranks SIGTERM stops at once (the ranks would not agree on one step)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        yield
        return
    _STOP.loops += 1
    try:
        yield
    finally:
        _STOP.loops -= 1


def stop_requested() -> bool:
    """SIGTERM asked the loop to stop after this step: checkpoint it now (`stop_at_step_end` then stops).
    A loop asks where it decides to checkpoint, first in its condition."""
    if _STOP.requested:
        _STOP.seen = True
    return _STOP.requested


def stop_at_step_end(what: str) -> None:
    """The end of a step (`what`: "rl step 3/8"): raise `Terminated` if SIGTERM arrived and the loop
    checkpointed the step (it saw `stop_requested()`); else carry on."""
    if _STOP.seen:
        _STOP.reset()
        raise Terminated(f"stopped by SIGTERM after {what}, its checkpoint saved; {RESUME_HINT} from there")
