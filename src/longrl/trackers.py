"""Experiment trackers: TensorBoard and Weights & Biases, off by default (`run.trackers`).

    run: {trackers: [tensorboard, wandb], wandb_project: longrl}

    trackers = Trackers(["tensorboard"], run_dir, config=cfg.model_dump(mode="json"), name="exp7")
    metrics = MetricsLog(run_dir / "metrics.jsonl", resume_step=3, trackers=trackers)   # starts them
    metrics.log({"step": 4, "phase": "rl", "reward/mean": 0.25})  # -> metrics.jsonl, then every tracker

metrics.jsonl stays the source of truth: a tracker receives each row after it is written there,
with its numeric, finite values only (strings such as `phase` and skipped-update NaNs are left out),
at the row's `step`, under the names `run.metric_names` asks for (`metric_names.py`: longrl's, the
ones a verl dashboard reads, or both). A tracker is one small class with `log(step, values)` and `close()`.

- `tensorboard` (needs the `tensorboard` package: `pip install 'longrl[tracking]'`): event files in
  DIR/tensorboard/ (`tensorboard --logdir DIR`), the resolved config as a text summary. A resumed
  run purges the events of the steps it redoes, so each step shows once.
- `wandb` (needs `wandb`): one W&B run per run directory (id derived from the directory, so a resume
  continues it), files in DIR/wandb/, the resolved config as the run config. `WANDB_MODE=offline`
  works with no network (`wandb sync DIR/wandb/offline-run-*` uploads later); the API key comes from
  W&B's own environment variable or login, never from longrl's config. W&B keeps the first value
  logged for a step, so after a resume the redone steps keep their earlier values there.

Missing packages are reported before any work (`check_available`, called by the command line).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path
from typing import Any, Protocol

import yaml

from longrl.errors import ConfigError
from longrl.metric_names import STYLES, tracker_values

# tracker name -> the package it needs
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


class Tracker(Protocol):
    def log(self, step: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def check_available(names: list[str]) -> None:
    """ConfigError naming each tracker whose package is not installed (nothing is imported)."""
    missing = [f"{name} needs the `{PACKAGES[name]}` package" for name in names
               if importlib.util.find_spec(PACKAGES[name]) is None]
    if missing:
        raise ConfigError(f"run.trackers: {'; '.join(missing)} (pip install 'longrl[tracking]')")


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite values of a metrics row (the step itself and strings left out)."""
    return {k: float(v) for k, v in row.items()
            if k != "step" and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


class TensorBoardTracker:
    """Scalars in DIR/tensorboard/ (event files), written with torch's SummaryWriter."""

    def __init__(self, run_dir: Path, config: dict[str, Any], name: str, resume_step: int | None):
        check_available(["tensorboard"])
        from torch.utils.tensorboard import SummaryWriter  # lazy: optional, and torch-heavy

        purge = resume_step + 1 if resume_step is not None else None   # redone steps replace the old events
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge)
        if resume_step is None:
            self.writer.add_text("config", "```yaml\n" + yaml.safe_dump(config, sort_keys=False) + "```", 0)

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """One W&B run per run directory; `WANDB_MODE=offline` needs no network."""

    def __init__(self, run_dir: Path, config: dict[str, Any], name: str, project: str):
        check_available(["wandb"])
        import wandb  # lazy: optional

        run_id = "longrl-" + hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
        self.run = wandb.init(project=project, name=f"{name}-{run_dir.name}", group=name, id=run_id, resume="allow",
                              dir=str(run_dir.resolve()), config=config,
                              settings=wandb.Settings(console="off", quiet=True))   # longrl keeps stderr to itself

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class Trackers:
    """The trackers a run's config names; `start(resume_step)` opens them (MetricsLog does)."""

    def __init__(self, names: list[str], run_dir: str | Path, config: dict[str, Any], name: str = "longrl",
                 wandb_project: str = "longrl", metric_names: str = "longrl"):
        unknown = sorted(set(names) - set(PACKAGES))
        if unknown:
            raise ConfigError(f"run.trackers: unknown tracker {unknown[0]!r}; known: {', '.join(PACKAGES)}")
        if metric_names not in STYLES:
            raise ConfigError(f"run.metric_names: unknown naming {metric_names!r}; known: {', '.join(STYLES)}")
        self.names, self.run_dir, self.config = list(names), Path(run_dir), config
        self.name, self.wandb_project, self.metric_names = name, wandb_project, metric_names
        validation = (config.get("rollout") or {}).get("validation") or {}
        self.val_n = int(validation.get("n", 1))          # verl names validation accuracy mean@N
        self.open: list[Tracker] = []

    @classmethod
    def from_config(cls, cfg, run_dir: str | Path) -> Trackers:
        """From a whole Config: `run.trackers`, `run.name`, `run.wandb_project`, `run.metric_names`; the
        resolved config is sent along."""
        return cls(list(cfg.run.trackers), run_dir, cfg.model_dump(mode="json"), cfg.run.name, cfg.run.wandb_project,
                   cfg.run.metric_names)

    def start(self, resume_step: int | None) -> None:
        for name in self.names:
            if name == "tensorboard":
                self.open.append(TensorBoardTracker(self.run_dir, self.config, self.name, resume_step))
            else:
                self.open.append(WandbTracker(self.run_dir, self.config, self.name, self.wandb_project))

    def log(self, row: dict[str, Any]) -> None:
        if self.open and isinstance(row.get("step"), int):
            values = tracker_values(scalars(row), self.metric_names, row["step"], self.val_n)
            for tracker in self.open:
                tracker.log(row["step"], values)

    def close(self) -> None:
        for tracker in self.open:
            tracker.close()
        self.open = []
