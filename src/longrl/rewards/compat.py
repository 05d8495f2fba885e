"""longrl's reward as plain functions for other RL frameworks: verl and TRL. Rule-only by default.

verl (`custom_reward_function`), rule verification only (no judge: verl calls it once per response,
synchronously). Extra keyword arguments come from `custom_reward_function.reward_kwargs`:

    custom_reward_function:
      path: <site-packages>/longrl/rewards/compat.py    # python -c "import longrl.rewards.compat as m; print(m.__file__)"
      name: compute_score           # a float; `compute_score_dict` (or reward_kwargs {return_dict: true}) returns
      reward_kwargs: {require_think: true}   # {"score", "acc", "pred"}, what DAPO's filter_groups.metric=acc reads;
                                             # {protocol: published}: the published scripts' rules

    compute_score("docmath_qa", "<think>...</think>Therefore, the answer is 30.", "Therefore, the answer is 30.")  # 1.0

The task comes from `data_source` (a TASKS name, or a DocQA-RL source prefix: docmath*,
long_toc_choices*, multihoprag*, musique*); `ground_truth` is a gold string, a list or numpy array of
them, or a number (int/float, as many verl datasets carry), with or without its answer sentence
("Therefore, the answer is 30." -> "30"). Any other data_source (a mixed verl dataset: gsm8k next to
DocQA) is never an exception: when verl is importable it goes to verl's own
`verl.utils.reward_score.default_compute_score` (its result as verl returns it); otherwise, or when
verl does not know the source either, it scores UNKNOWN_SOURCE_SCORE (0.0) with one UserWarning per
data_source.

TRL (`GRPOTrainer(reward_funcs=[longrl_reward])`): `(prompts, completions, **columns) -> list[float]`
with dataset columns `answers` (list of gold strings per row, or one string) and `task` (or
`data_source`), optionally `question` (for the judge). Completions may be plain strings or
conversations (lists of {"role", "content"}). `longrl_reward` is rule-only; `make_trl_reward(cfg)`
builds one with the LLM judge (`cfg.judge`) or overlong shaping from a RewardConfig. With
`require_think` on (the default, as QwenLong-L1 trains), a response without `</think>` scores 0: the
reward warns once when every completion of a call lacks it (a model that does not reason; pass
`RewardConfig(require_think=False)`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from longrl.config.reward import RewardConfig
from longrl.data.importers import (
    PROMPT_RE,
    TASK_PREFIXES,
    strip_answer_sentence,
    task_for_source,
)
from longrl.data.tasks import TASKS
from longrl.errors import UserError
from longrl.rewards.hybrid import HybridReward, RewardInput

THINK_END = "</think>"
UNKNOWN_SOURCE_SCORE = 0.0         # what compute_score gives a data_source neither longrl nor verl scores
_WARNED_SOURCES: set[str] = set()  # data sources already warned about (once each per process)


def verl_default_compute_score() -> tuple[Callable[..., Any] | None, str]:
    """verl's own scorer for the data sources it knows, when verl is importable: (function, "") or (None, why not)."""
    try:
        from verl.utils import reward_score  # optional: verl's scorer, present where verl runs this function
    except ImportError:
        return None, "verl is not installed"
    except Exception as exc:  # an installed verl whose import fails (a missing dependency of its own)
        return None, f"verl did not import ({type(exc).__name__}: {exc})"
    fn = getattr(reward_score, "default_compute_score", None) or getattr(reward_score, "_default_compute_score", None)
    return (fn, "") if callable(fn) else (None, "verl has no default_compute_score")


def unknown_source_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None,
                         return_dict: bool) -> float | dict[str, Any]:
    """The score of a data_source longrl does not know: verl's default_compute_score's, else UNKNOWN_SOURCE_SCORE."""
    default, why = verl_default_compute_score()
    if default is not None:
        try:
            value = default(data_source, solution_str, ground_truth, extra_info)
        except NotImplementedError:          # verl's "Reward function is not implemented for data_source"
            why = "verl's default_compute_score does not know it either"
        else:
            if return_dict and not isinstance(value, dict):
                value = {"score": float(value), "acc": 1.0 if float(value) >= 1.0 else 0.0, "pred": ""}
            return value
    if data_source not in _WARNED_SOURCES:
        _WARNED_SOURCES.add(data_source)
        prefixes = ", ".join(p + "*" for p, _ in TASK_PREFIXES)
        warnings.warn(f"longrl compute_score: data_source {data_source!r} is not a longrl task ({', '.join(TASKS.names())}) "
                      f"nor a known prefix ({prefixes}), and {why}: its responses score {UNKNOWN_SOURCE_SCORE} "
                      "(said once per data_source)", UserWarning, stacklevel=3)
    if return_dict:
        return {"score": UNKNOWN_SOURCE_SCORE, "acc": 0.0, "pred": ""}
    return UNKNOWN_SOURCE_SCORE


def task_for(data_source: str) -> str:
    """A TASKS name from a task name or a DocQA-RL data_source; UserError naming the known ones."""
    if data_source in TASKS:
        return data_source
    task = task_for_source(data_source)
    if task is None:
        prefixes = ", ".join(p + "*" for p, _ in TASK_PREFIXES)
        raise UserError(f"data_source {data_source!r}: not a task ({', '.join(TASKS.names())}) nor a known prefix ({prefixes})")
    return task


def gold_text(value: Any) -> str | None:
    """One gold as text: a string as is, an int or float (numpy scalars too) as its shortest decimal form."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()                        # numpy scalar -> Python
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.15g}"                     # 30.0 -> "30", 0.1 -> "0.1", 1e-07 -> "1e-07"
    return None


def golds_from(ground_truth: Any, task: str) -> list[str]:
    """Gold strings from a string, a number, or a list / tuple / numpy array of them; answer sentences stripped."""
    if hasattr(ground_truth, "tolist") and not isinstance(ground_truth, str):
        ground_truth = ground_truth.tolist()       # numpy array (verl's non-tensor batch) or scalar
    values = list(ground_truth) if isinstance(ground_truth, list | tuple) else [ground_truth]
    texts = [gold_text(v) for v in values]
    if not texts or any(t is None for t in texts):
        raise UserError(f"ground_truth must be a string, a number, or a list of them, got {ground_truth!r}")
    golds = [strip_answer_sentence(t, task) for t in texts]
    return [g for g in golds if g] or texts


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                  require_think: bool = True, numeric_rel_tol: float = 0.0015, protocol: str = "strict",
                  return_dict: bool = False, **_: Any) -> float | dict[str, Any]:
    """verl's custom reward function: the rule score (0.0 or 1.0) of one response.

    A data_source that is no task nor DocQA-RL source goes to verl's default_compute_score when verl is
    importable, else scores UNKNOWN_SOURCE_SCORE with a warning (`unknown_source_score`): never an exception.

    Args:
        data_source: task name or DocQA-RL data_source (others: above).
        solution_str: the decoded response.
        ground_truth: gold answer(s): a string, an int or float, or a list / numpy array of them.
        extra_info: verl's per-row extras (unused).
        require_think: a response without `</think>` scores 0.
        numeric_rel_tol: docmath relative tolerance.
        protocol: "strict" (default) or "published" (the published evaluation scripts' rules).
        return_dict: return {"score", "acc", "pred"} instead of the float (verl's DAPO trainer reads
            `acc` for `algorithm.filter_groups.metric=acc`, and logs every key).
    """
    if data_source not in TASKS and task_for_source(data_source) is None:
        return unknown_source_score(data_source, solution_str, ground_truth, extra_info, return_dict)
    task = task_for(data_source)
    try:
        cfg = RewardConfig(require_think=require_think, numeric_rel_tol=numeric_rel_tol, protocol=protocol)
    except ValueError as exc:
        raise UserError(f"compute_score: {exc}") from None
    reward = HybridReward(cfg)
    item = RewardInput(task=task, question="", answers=golds_from(ground_truth, task), response=solution_str)
    outcome = reward.rule(item)
    score = float(outcome.verdict.score)
    if not return_dict:
        return score
    return {"score": score, "acc": 1.0 if score >= 1.0 else 0.0, "pred": outcome.extraction.prediction or ""}


def compute_score_dict(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                       **kwargs: Any) -> dict[str, Any]:
    """`compute_score(..., return_dict=True)`, for a verl config that names the function (`name: compute_score_dict`)."""
    kwargs["return_dict"] = True
    return compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs)


def completion_text(completion: Any) -> str:
    """A TRL completion as text: a string, or the content of the last message of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content")
        if isinstance(content, str):
            return content
    raise UserError(f"completion must be a string or a list of chat messages, got {type(completion).__name__}")


def question_from_prompt(prompt: Any) -> str:
    """The question of a longrl/DocQA prompt (text after </text>), else the prompt's last 1,000 characters."""
    text = prompt if isinstance(prompt, str) else completion_text(prompt) if prompt else ""
    match = PROMPT_RE.search(text)
    return match.group("question").strip() if match else text[-1000:]


def make_trl_reward(cfg: RewardConfig | None = None, max_completion_length: int | None = None,
                    name: str = "longrl_reward") -> Callable[..., list[float]]:
    """A TRL reward function scoring with HybridReward(cfg) (rule only by default).

    Args:
        cfg: reward config (judge, overlong shaping, tolerance); None = defaults.
        max_completion_length: the trainer's generation limit, needed for overlong shaping.
        name: the function's __name__ (TRL logs rewards under it).
    """
    reward = HybridReward(cfg or RewardConfig())
    warned = False

    def warn_if_no_reasoning(texts: list[str]) -> None:
        nonlocal warned
        if warned or not reward.cfg.require_think or not texts or any(THINK_END in t for t in texts):
            return
        warned = True
        warnings.warn(f"{name}: none of the {len(texts)} completions contains {THINK_END}, so every one scores 0 "
                      "(require_think is on). For a model that does not reason, build the reward with "
                      "make_trl_reward(RewardConfig(require_think=False)).", UserWarning, stacklevel=3)

    def reward_fn(prompts: list[Any], completions: list[Any], answers: list[Any] | None = None,
                  task: list[str] | None = None, question: list[str] | None = None,
                  data_source: list[str] | None = None, completion_ids: list[list[int]] | None = None,
                  **_: Any) -> list[float]:
        if answers is None or (task is None and data_source is None):
            raise UserError("longrl TRL reward needs dataset columns 'answers' and 'task' (or 'data_source')")
        tasks = task if task is not None else [task_for(s) for s in data_source]
        texts = [completion_text(c) for c in completions]
        warn_if_no_reasoning(texts)
        items = []
        for i, text in enumerate(texts):
            items.append(RewardInput(
                task=tasks[i], answers=golds_from(answers[i], tasks[i]), response=text,
                question=question[i] if question is not None else question_from_prompt(prompts[i] if prompts else ""),
                response_tokens=len(completion_ids[i]) if completion_ids is not None else 0,
                max_response_tokens=max_completion_length))
        return [r.score for r in reward.score(items)]

    reward_fn.__name__ = reward_fn.__qualname__ = name
    return reward_fn


longrl_reward = make_trl_reward()
