"""Base class of every config section, and the `run` section shared by all commands."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

INT64_MAX = 2**63 - 1
# Upper bounds of sizes, far above any real run and far below what would be allocated before failing
# (the model- and machine-dependent checks come at start-up: `rl/sizes.py`, `longrl plan`).
MAX_NEW_TOKENS = 1 << 20        # a response limit (the recipe's is 10K; 1,048,576 tokens is ~4 MB of text)
MAX_INPUT_TOKENS = 1 << 22      # a prompt budget (4,194,304 tokens: past any model's context today)
MAX_GROUP_SIZE = 1024           # samples per prompt (the recipe's G is 8)
MAX_PROMPTS = 1 << 16           # prompts per RL step or generation round (the recipe's: 128 and 384)
MAX_BATCH = 4096                # prompts decoded together
MAX_BATCH_TOKENS = 1 << 24      # tokens of one forward/backward or optimizer step
Beta = Annotated[float, Field(ge=0, lt=1)]  # an Adam moment decay rate


class Section(BaseModel):
    """A config section: unknown keys are errors, values are validated, instances are immutable.

    No value anywhere in a config may be NaN or infinite, or an integer outside 64 bits (torch,
    NumPy and the tokenizers take int64 at most): such a value is an error at load time, not a
    crash or a silently wrong run later. Free-form fields (dicts, lists) are checked inside too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        problem = _out_of_range(value)
        if problem:
            raise ValueError(problem)
        return value


def _out_of_range(value: Any) -> str | None:
    """Why `value` (or a number inside a list/tuple/dict of it) is not a usable number; None if fine."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, str | BaseModel):
            continue  # nested sections check their own fields
        if isinstance(item, float) and not math.isfinite(item):
            return f"{item} is not a finite number"
        if isinstance(item, int) and not -INT64_MAX - 1 <= item <= INT64_MAX:
            return f"{item} does not fit in 64 bits"
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


class RunConfig(Section):
    name: str = "longrl"                      # free-form label of the run: the title of report.md
    seed: int = 0                             # every random stream derives from it (data, init, sampling)
    torch_threads: int = Field(0, ge=0, le=4096)  # torch intra-op threads; 0 = torch's default
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")  # auto = cuda if available
    log_every: int = Field(1, ge=1)           # steps between console progress lines
    save_every: int = Field(50, ge=1)         # steps between checkpoints (the last step always saves)
    keep_checkpoints: int = Field(2, ge=1)    # newest N checkpoints kept
    dump_samples_every: int = Field(10, ge=0)  # steps between rollout sample dumps; 0 = never
    progress: Literal["auto", "rich", "plain", "none"] = "auto"  # console progress: auto = bars on a terminal, plain lines otherwise
    trackers: list[Literal["tensorboard", "wandb"]] = []  # experiment trackers fed from metrics.jsonl (optional packages)
    wandb_project: str = "longrl"             # W&B project of the `wandb` tracker (entity, key, mode: W&B's own env vars)
    metric_names: Literal["longrl", "verl", "both"] = "longrl"  # trackers get longrl names, verl (a verl dashboard), or both
