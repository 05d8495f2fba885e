"""Run directories: resolved config, metrics.jsonl (each step exactly once), sample dumps, timers.

    out = prepare_run_dir("runs/x", cfg)          # creates runs/x, writes runs/x/config.yaml
    metrics = MetricsLog(out / "metrics.jsonl", resume_step=state.get("step"))
    timers = Timers()
    with timers.time("rollout"):
        ...
    metrics.log({"step": 3, "phase": "p1", **timers.pop()})

Rerunning a command on the same directory resumes it, so a directory whose config.yaml differs
from the new config is refused (use a new --out, or delete the directory).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from longrl.errors import ConfigError
from longrl.files import atomic_open, atomic_write_text


def prepare_run_dir(out: str | Path, cfg) -> Path:
    from longrl.config import to_yaml

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = to_yaml(cfg)
    existing = out / "config.yaml"
    if existing.exists():
        old = yaml.safe_load(existing.read_text())
        new = yaml.safe_load(text)
        if old != new:
            changed = sorted(_diff_keys(old, new))
            raise ConfigError(f"{out} holds a run with a different config (changed: {', '.join(changed[:8])}); "
                              "use another --out to start a new run, or the same config to resume")
    else:
        atomic_write_text(existing, text)
    return out


def _diff_keys(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = []
        for k in sorted(set(old) | set(new)):
            keys += _diff_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return keys
    return [prefix.rstrip(".")] if old != new else []


class MetricsLog:
    """Append-only JSONL of per-step metrics.

    On resume from a checkpoint taken after step `resume_step`, lines of later steps (logged
    after that checkpoint, about to be redone) are dropped first, so each step appears once.
    A torn last line (a kill mid-write) is dropped too.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        kept = [row for row in read_metrics(self.path) if resume_step is not None and row.get("step", -1) <= resume_step]
        with atomic_open(self.path, "w") as fh:
            for row in kept:
                fh.write(json.dumps(row) + "\n")
        self._fh = open(self.path, "a", encoding="utf-8")

    def log(self, row: dict[str, Any]) -> None:
        self._fh.write(json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl (a torn or corrupt line is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
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
