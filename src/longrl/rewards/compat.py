"""longrl's reward as plain functions for other RL frameworks: verl and TRL.

verl (`custom_reward_function`), rule verification only; extra keyword arguments come from
`custom_reward_function.reward_kwargs`:

    custom_reward_function:
      path: <site-packages>/longrl/rewards/compat.py
      name: compute_score
      reward_kwargs: {require_think: true}          # or {protocol: published}: the published scripts' rules

    compute_score("docmath_qa", "<think>...</think>Therefore, the answer is 30.", "Therefore, the answer is 30.")  # 1.0

The task comes from `data_source` (a TASKS name, or a DocQA-RL source prefix: docmath*,
long_toc_choices*, multihoprag*, musique*); `ground_truth` is a gold string or a list of them, with
or without its answer sentence ("Therefore, the answer is 30." -> "30").

TRL (`GRPOTrainer(reward_funcs=[longrl_reward])`): `(prompts, completions, **columns) -> list[float]`
with dataset columns `answers` (list of gold strings per row, or one string) and `task` (or
`data_source`), optionally `question` (for the judge). Completions may be plain strings or
conversations (lists of {"role", "content"}). `make_trl_reward(cfg)` builds one with a judge or
overlong shaping from a RewardConfig.
"""

from __future__ import annotations

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


def task_for(data_source: str) -> str:
    """A TASKS name from a task name or a DocQA-RL data_source; UserError naming the known ones."""
    if data_source in TASKS:
        return data_source
    task = task_for_source(data_source)
    if task is None:
        prefixes = ", ".join(p + "*" for p, _ in TASK_PREFIXES)
        raise UserError(f"data_source {data_source!r}: not a task ({', '.join(TASKS.names())}) nor a known prefix ({prefixes})")
    return task


def golds_from(ground_truth: Any, task: str) -> list[str]:
    """Gold strings from a string or a sequence of strings, answer sentences stripped."""
    values = [ground_truth] if isinstance(ground_truth, str) else list(ground_truth)
    if not values or not all(isinstance(v, str) for v in values):
        raise UserError(f"ground_truth must be a string or a list of strings, got {ground_truth!r}")
    golds = [strip_answer_sentence(v, task) for v in values]
    return [g for g in golds if g] or values


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                  require_think: bool = True, numeric_rel_tol: float = 0.0015, protocol: str = "strict", **_: Any) -> float:
    """verl's custom reward function: the rule score (0.0 or 1.0) of one response.

    Args:
        data_source: task name or DocQA-RL data_source.
        solution_str: the decoded response.
        ground_truth: gold answer string(s).
        extra_info: verl's per-row extras (unused).
        require_think: a response without `</think>` scores 0.
        numeric_rel_tol: docmath relative tolerance.
        protocol: "strict" (default) or "published" (the published evaluation scripts' rules).
    """
    task = task_for(data_source)
    try:
        cfg = RewardConfig(require_think=require_think, numeric_rel_tol=numeric_rel_tol, protocol=protocol)
    except ValueError as exc:
        raise UserError(f"compute_score: {exc}") from None
    reward = HybridReward(cfg)
    item = RewardInput(task=task, question="", answers=golds_from(ground_truth, task), response=solution_str)
    return reward.rule(item).verdict.score


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

    def reward_fn(prompts: list[Any], completions: list[Any], answers: list[Any] | None = None,
                  task: list[str] | None = None, question: list[str] | None = None,
                  data_source: list[str] | None = None, completion_ids: list[list[int]] | None = None,
                  **_: Any) -> list[float]:
        if answers is None or (task is None and data_source is None):
            raise UserError("longrl TRL reward needs dataset columns 'answers' and 'task' (or 'data_source')")
        tasks = task if task is not None else [task_for(s) for s in data_source]
        items = []
        for i, completion in enumerate(completions):
            golds = [answers[i]] if isinstance(answers[i], str) else list(answers[i])
            items.append(RewardInput(
                task=tasks[i], answers=golds, response=completion_text(completion),
                question=question[i] if question is not None else question_from_prompt(prompts[i] if prompts else ""),
                response_tokens=len(completion_ids[i]) if completion_ids is not None else 0,
                max_response_tokens=max_completion_length))
        return [r.score for r in reward.score(items)]

    reward_fn.__name__ = reward_fn.__qualname__ = name
    return reward_fn


longrl_reward = make_trl_reward()
