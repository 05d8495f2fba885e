"""Base class of every config section, and the `run` section shared by all commands."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """A config section: unknown keys are errors, values are validated, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class RunConfig(Section):
    name: str = "longrl"                      # free-form label of the run: the title of report.md
    seed: int = 0                             # every random stream derives from it (data, init, sampling)
    torch_threads: int = Field(0, ge=0)       # torch intra-op threads; 0 = torch's default
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")  # auto = cuda if available
    log_every: int = Field(1, ge=1)           # steps between console progress lines
    save_every: int = Field(50, ge=1)         # steps between checkpoints (the last step always saves)
    keep_checkpoints: int = Field(2, ge=1)    # newest N checkpoints kept
    dump_samples_every: int = Field(10, ge=0)  # steps between rollout sample dumps; 0 = never
    progress: Literal["auto", "rich", "plain", "none"] = "auto"  # console progress: auto = bars on a terminal, plain lines otherwise
    trackers: list[Literal["tensorboard", "wandb"]] = []  # experiment trackers fed from metrics.jsonl (optional packages)
    wandb_project: str = "longrl"             # W&B project of the `wandb` tracker (entity, key, mode: W&B's own env vars)
