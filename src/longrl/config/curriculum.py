"""Config section `curriculum`: RL phases of growing length and retrospective sampling."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from longrl.config.base import MAX_GROUP_SIZE, MAX_INPUT_TOKENS, MAX_NEW_TOKENS, Section
from longrl.config.data import DataSource


class PhaseConfig(Section):
    name: str                                  # recorded in every metrics line and checkpoint
    max_input_tokens: int = Field(ge=16, le=MAX_INPUT_TOKENS)  # items whose tokenized prompt is longer are dropped (counted)
    max_response_tokens: int = Field(ge=1, le=MAX_NEW_TOKENS)  # response limit of the phase's rollouts
    data: list[DataSource] = []                # this phase's new items
    steps: int | None = Field(None, ge=1)      # RL steps; or epochs over the phase's items
    epochs: float | None = Field(None, gt=0)   # passes over the phase's items (set steps or epochs)
    overrides: dict[str, Any] = {}             # dotted keys of any RL setting, e.g. {"algo.clip_eps_high": 0.3}


class RetrospectiveConfig(Section):
    """Retrospective sampling: the hardest items of earlier phases, scored again, carried into the next."""

    mode: Literal["off", "offline", "online"] = "offline"  # offline = extra rollouts at the transition
    samples: int = Field(4, ge=1, le=MAX_GROUP_SIZE)  # K rollouts per earlier item (offline)
    metric: Literal["accuracy", "reward"] = "accuracy"  # what K/K and difficulty are measured on: correctness (before shaping) or the shaped reward
    difficulty: Literal["one_minus_mean", "inverse_mean"] = "one_minus_mean"  # score of an item from its K results: 1 - mean | 1 / mean
    count: int | None = Field(None, ge=0)      # carry the hardest N items (set: fraction is not used)
    fraction: float | None = Field(0.25, ge=0, le=1)  # else carry this hardest fraction of the scored items (None = all)
    exclude_unsolved: bool = False             # drop items solved 0/K (maybe unlearnable); K/K always dropped
    # What phase k trains on (`curriculum/phases.py:mix_phase`; counts in phaseK/items.json):
    #   new_plus_carried (default; the paper: hard items "carried into the next phase alongside its new,
    #     longer data"): the phase's own items that no earlier phase trained on, plus the carried ones.
    #     When every phase reads one file this is the items longer than the previous limit plus the
    #     carried hard ones; with separate files per phase, the phase's whole file plus the carried ones.
    #     With mode: off nothing is carried, and the phase still leaves out what earlier phases trained on
    #     (carry: replay with mode: off trains each phase on all of its data that fits).
    #   replay: the phase keeps all of its own items, and every carried item is added `replay_copies`
    #     more times: extra weight, each carried item is drawn 1 + replay_copies times an epoch.
    # Steps given as `epochs` count passes over that list (replayed copies included).
    carry: Literal["new_plus_carried", "replay"] = "new_plus_carried"  # new_plus_carried = its new items + the carried
                                               # ones (the paper) | replay = all its items + each carried one
                                               # replay_copies more times
    replay_copies: int = Field(1, ge=1)        # replay: extra copies of each carried item


class CurriculumConfig(Section):
    phases: list[PhaseConfig] = []             # the RL phases of `longrl pipeline`, in order of growing length; [] = no RL
    retrospective: RetrospectiveConfig = RetrospectiveConfig()
