"""`reward.custom`: your own scoring function, from a file the config names, in place of the rule.

    reward:
      custom: {path: my_reward.py, name: compute_score, tasks: [qa], reward_kwargs: {strict: true}}

    # my_reward.py: verl's custom_reward_function signature
    def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
        return 1.0 if ground_truth[0].lower() in solution_str.lower() else 0.0   # or {"score": ..., "acc": ...}

    custom = load_custom(cfg.reward.custom)       # once per process; ConfigError (exit 2) naming what is wrong
    outcome = custom.score(reward_input)          # CustomScore(score, metrics, error)

The file is loaded the way verl loads `custom_reward_function`: the path comes from the config (your
own code, as a training script is), relative paths from the working directory. Data rows never
choose code: a row's `task` only picks among the tasks registered in longrl (`data.tasks.TASKS`).
The call gets data_source = the row's task, solution_str = the response, ground_truth = the list of
gold answers (what `longrl data export --format verl` writes as `reward_model.ground_truth`),
extra_info = {question, context, response_tokens, max_response_tokens}, and `reward_kwargs` as
keyword arguments. It returns a number (bool and NumPy scalars too) or a dict whose "score" is one;
the dict's other numeric values are logged as reward/custom/<key>.

Start-up checks (ConfigError, exit 2): the file exists and is a .py file, it runs, it defines `name`,
that is a function taking those arguments, and `tasks` are registered tasks. At run time a call
that raises, or returns no finite number, is an error: the response scores 0 and the error is
counted (reward/custom_errors); above `max_error_rate` of a batch's calls (default 0: the first one)
the command stops with CustomRewardError naming the function, the task and the exception.
How HybridReward combines the score with the judge and overlong shaping: rewards/hybrid.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longrl.config.reward import CustomRewardConfig
from longrl.data.tasks import TASKS
from longrl.errors import ConfigError, UserError

# resolved path -> the loaded module: each file runs once per process (a later edit does not reach a running
# command, a pipeline's later phases included).
_MODULES: dict[str, Any] = {}


class CustomRewardError(UserError):
    """The custom reward function failed on more of a batch than `reward.custom.max_error_rate` allows."""


@dataclass(frozen=True)
class CustomScore:
    score: float                                            # 0.0 on an error
    metrics: dict[str, float] = field(default_factory=dict)  # custom/<key> for a dict's other numeric values
    error: str | None = None                                # why the call failed


@dataclass(frozen=True)
class CustomReward:
    """A loaded `reward.custom`: the function and how to call it."""

    fn: Callable[..., Any]
    label: str                                  # "compute_score from /abs/my_reward.py", for messages
    reward_kwargs: dict[str, Any]
    tasks: frozenset[str]                       # empty: every task
    max_error_rate: float

    def applies(self, task: str) -> bool:
        return not self.tasks or task in self.tasks

    def score(self, item) -> CustomScore:
        """Call the function on one RewardInput; an exception or a value that is no number is an error, not a raise."""
        extra = {"question": item.question, "context": item.context, "response_tokens": item.response_tokens,
                 "max_response_tokens": item.max_response_tokens}
        try:
            value = self.fn(item.task, item.response, list(item.answers), extra, **self.reward_kwargs)
        except Exception as exc:  # the user's code: counted, and fatal above max_error_rate (HybridReward)
            return CustomScore(0.0, error=f"{type(exc).__name__}: {exc}")
        return read_value(value)

    def check_errors(self, calls: list[tuple[str, str | None]]) -> None:
        """CustomRewardError when the failed share of a batch's (task, error or None) calls is above max_error_rate."""
        failed = [(task, error) for task, error in calls if error is not None]
        if failed and len(failed) / len(calls) > self.max_error_rate:
            task, first = failed[0]
            raise CustomRewardError(
                f"reward.custom: {self.label} failed on {len(failed)} of {len(calls)} responses in this batch "
                f"({len(failed) / len(calls):.0%} > reward.custom.max_error_rate={self.max_error_rate:g}); "
                f"first, on task {task!r}: {first}")


def number(value: Any) -> float | None:
    """A finite float from an int, float or bool (NumPy scalars and 0-d tensors too); None otherwise."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (TypeError, ValueError):     # an array of several values
            return None
    if isinstance(value, bool | int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def read_value(value: Any) -> CustomScore:
    """What the function returned, as a score and metrics (verl's forms: a number, or a dict with "score")."""
    if isinstance(value, dict):
        score = number(value.get("score"))
        if score is None:
            return CustomScore(0.0, error=f"returned a dict whose 'score' is not a finite number: {value.get('score')!r:.80}")
        metrics = {f"custom/{k}": v for k, raw in value.items() if k != "score" and isinstance(k, str)
                   and (v := number(raw)) is not None}
        return CustomScore(score, metrics)
    score = number(value)
    if score is None:
        return CustomScore(0.0, error=f"returned {type(value).__name__} {value!r:.80}, not a finite number "
                                      "or a dict with a 'score'")
    return CustomScore(score)


def load_custom(cfg: CustomRewardConfig) -> CustomReward:
    """Load `reward.custom` (once per process for each file); ConfigError naming the key and the problem."""
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"reward.custom.tasks: unknown task {unknown[0]!r}; known: {', '.join(TASKS.names())}")
    path = Path(cfg.path).expanduser()
    where = "" if path.is_absolute() else f" (a relative path is read from the working directory, {Path.cwd()})"
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"reward.custom.path: no such file: {path}{where}")
    if path.suffix != ".py":
        raise ConfigError(f"reward.custom.path: {path} is not a Python file (.py)")
    module = load_module(path)
    if not hasattr(module, cfg.name):
        defined = sorted(k for k, v in vars(module).items() if inspect.isfunction(v) and not k.startswith("_"))
        raise ConfigError(f"reward.custom.name: {path} defines no {cfg.name!r}; functions it defines: "
                          f"{', '.join(defined) or 'none'}")
    fn = getattr(module, cfg.name)
    if not callable(fn):
        raise ConfigError(f"reward.custom.name: {cfg.name!r} in {path} is a {type(fn).__name__}, not a function")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):          # a builtin without a signature: its first call will tell
        signature = None
    if signature is not None:
        try:
            signature.bind("task", "response", ["gold"], {}, **cfg.reward_kwargs)
        except TypeError as exc:
            raise ConfigError(f"reward.custom: {cfg.name}{signature} in {path} cannot be called as "
                              f"{cfg.name}(data_source, solution_str, ground_truth, extra_info, **reward_kwargs): "
                              f"{exc}") from None
    return CustomReward(fn, f"{cfg.name} from {path}", dict(cfg.reward_kwargs), frozenset(cfg.tasks), cfg.max_error_rate)


def load_module(path: Path):
    """Run the file as a module of its own (registered in sys.modules, as an import would be), once per process."""
    key = str(path)
    if key in _MODULES:
        return _MODULES[key]
    name = "longrl_custom_reward_" + hashlib.sha256(key.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any failure is a config error naming it
        del sys.modules[name]
        line = getattr(exc, "lineno", None)
        at = f" (line {line})" if isinstance(exc, SyntaxError) and line else ""
        raise ConfigError(f"reward.custom.path: {path} failed to load{at}: {type(exc).__name__}: {exc}") from None
    _MODULES[key] = module
    return module
