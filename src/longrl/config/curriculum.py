"""Config section `curriculum`: RL phases of growing length and retrospective sampling."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from longrl.config.base import Section
from longrl.config.data import DataSource


class PhaseConfig(Section):
    name: str                                  # recorded in every metrics line and checkpoint
    max_input_tokens: int = Field(ge=16)       # items whose tokenized prompt is longer are dropped (counted)
    max_response_tokens: int = Field(ge=1)
    data: list[DataSource] = []                # this phase's new items
    steps: int | None = Field(None, ge=1)      # RL steps; or epochs over the phase's items
    epochs: float | None = Field(None, gt=0)
    overrides: dict[str, Any] = {}             # dotted keys of any RL setting, e.g. {"algo.clip_eps_high": 0.3}


class RetrospectiveConfig(Section):
    mode: Literal["off", "offline", "online"] = "offline"  # offline = extra rollouts at the transition
    samples: int = Field(4, ge=1)              # K rollouts per earlier item (offline)
    metric: Literal["accuracy", "reward"] = "accuracy"  # what K/K and difficulty are measured on: correctness (before shaping) or the shaped reward
    difficulty: Literal["one_minus_mean", "inverse_mean"] = "one_minus_mean"
    count: int | None = Field(None, ge=0)      # carry the hardest N items, or
    fraction: float | None = Field(0.25, ge=0, le=1)  # the hardest fraction of scored items
    exclude_unsolved: bool = False             # drop items solved 0/K (maybe unlearnable); K/K always dropped


class CurriculumConfig(Section):
    phases: list[PhaseConfig] = []
    retrospective: RetrospectiveConfig = RetrospectiveConfig()
