"""The hybrid reward: rule verification, the LLM judge when the rule says no, DAPO overlong shaping.

    reward = HybridReward(cfg.reward)                 # builds an OpenAIJudge when cfg.reward.judge is set
    results = reward.score([RewardInput(task="multihop", question=q, answers=["Rilu"], response=text)])
    metrics = summarize(results)                      # {"reward/mean": ..., "reward/rule": ..., ...}
    results = await reward.ascore(items)              # the same from async code (the eval harness)

Per response: under `reward.protocol: strict` (the default) the prediction is extracted
(`extract.py`) and the task's verifier (through `longrl.data.tasks.TASKS`) gives the rule score,
with the units the question or document states ("in thousands") known to the numeric verifier;
under `published` both come from `published.py` (the published evaluation scripts' rules). The judge is asked only when the rule score is 0,
a prediction exists, a judge is configured and the task's verifier is in `judge_verifiers`; under
`published`, DocMath's "prediction exists" is the published RL reward's condition
(`published.docmath_judge_prediction`: a number literal after `</think>`), and that literal is what the
judge is shown. The judge's prompt and verdict reading are `reward.judge.prompt` (`judge.py`).
score = max(rule, judge) + overlong penalty (when enabled). With `reward.custom` (`custom.py`) your
function's score replaces the rule score of the tasks it covers (all, or `reward.custom.tasks`): the
prediction (shown to the judge, dumped with samples) is still longrl's extraction (`extract.py`), the
judge is asked when the custom score is below 1 (not correct) on the same conditions, and a judge's
yes lifts the score to max(custom, 1); a custom score may be any finite number (a negative one stays
negative unless the judge says yes). Correct (accuracy) = custom score >= 1 or the judge's yes.
Identical judge questions in one batch
(the G samples of a group often agree) are sent once. A judge that fails on more than
`judge.max_error_rate` of a batch's calls raises JudgeError: never quiet zeros.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from longrl.config.reward import JudgeConfig, RewardConfig
from longrl.data.tasks import TASKS
from longrl.errors import ConfigError, UserError
from longrl.rewards.custom import CustomReward, load_custom
from longrl.rewards.extract import Extraction, extract_prediction
from longrl.rewards.judge import JudgeClient, JudgeError, JudgeVerdict, OpenAIJudge, format_golds
from longrl.rewards.numbers import stated_scales
from longrl.rewards.published import docmath_judge_prediction, published_rule
from longrl.rewards.verifiers import VERIFIERS, Verdict, VerifyOptions

DEFAULT_MAX_ERROR_RATE = JudgeConfig.model_fields["max_error_rate"].default


@dataclass(frozen=True)
class RewardInput:
    task: str                               # a TASKS name: picks the verifier
    question: str                           # shown to the judge (without the document)
    answers: list[str]                      # gold answers; any match counts
    response: str                           # the model's full reply
    response_tokens: int = 0                # length of the reply in tokens (overlong shaping)
    max_response_tokens: int | None = None  # the generation limit it ran under (overlong shaping)
    context: str = ""                       # the document (strict numeric: units it states, e.g. "in thousands")


@dataclass(frozen=True)
class RewardResult:
    score: float                 # max(rule, judge) + penalty
    rule_score: float            # 0 or 1 from the verifier
    judge_score: float | None    # 0 or 1; None when not asked or the call failed
    prediction: str | None       # extracted answer
    status: str                  # "ok" | "unfinished_think" | "no_answer"
    penalty: float               # overlong penalty, in [-1, 0]
    metrics: dict[str, float] = field(default_factory=dict)  # verifier metrics (qa: em, f1; parsed)
    judge_error: str | None = None  # why the judge call failed
    judge_cached: bool = False      # the verdict came from the on-disk cache
    custom: bool = False            # scored by reward.custom (rule_score is its score) instead of the rule
    custom_error: str | None = None  # why the custom function failed (the score is then 0)

    @property
    def judge_asked(self) -> bool:
        return self.judge_score is not None or self.judge_error is not None


def overlong_penalty(response_tokens: int, max_response_tokens: int, buffer: int) -> float:
    """DAPO soft overlong punishment (arXiv 2503.14476, eq. 13): 0 up to `max - buffer` tokens,
    then falling linearly to -1 at `max`, and -1 beyond.

    Example: max 100, buffer 20: 80 tokens -> 0.0, 90 -> -0.5, 100 -> -1.0, 120 -> -1.0.
    """
    start = max_response_tokens - buffer
    if response_tokens <= start:
        return 0.0
    if response_tokens > max_response_tokens:
        return -1.0
    return (start - response_tokens) / buffer


@dataclass(frozen=True)
class RuleOutcome:
    extraction: Extraction  # prediction and status
    verdict: Verdict        # rule score and verifier metrics (zeros when there is no prediction); or the custom score
    verifier: str           # VERIFIERS name of the task (the custom function replaced it when `custom`)
    custom: bool = False    # scored by reward.custom
    custom_error: str | None = None

    @property
    def judgeable(self) -> bool:
        """The judge may overturn it: a rule score of 0, or a custom score below 1 from a call that did not fail."""
        if self.custom:
            return self.verdict.score < 1.0 and self.custom_error is None
        return self.verdict.score == 0


class HybridReward:
    """Scores batches of responses; holds the verifiers, the options and the judge client."""

    def __init__(self, cfg: RewardConfig, judge: JudgeClient | None = None):
        self.cfg = cfg
        self.opts = VerifyOptions.from_config(cfg)
        for name in cfg.judge_verifiers:
            if name not in VERIFIERS:
                raise ConfigError(f"reward.judge_verifiers: unknown verifier {name!r}; known: {', '.join(VERIFIERS.names())}")
        if judge is None and cfg.judge is not None:
            judge = OpenAIJudge(cfg.judge)
        self.judge = judge
        self.max_error_rate = cfg.judge.max_error_rate if cfg.judge is not None else DEFAULT_MAX_ERROR_RATE
        self.custom: CustomReward | None = load_custom(cfg.custom) if cfg.custom is not None else None

    def score(self, items: list[RewardInput], progress: Callable[[int], None] | None = None) -> list[RewardResult]:
        """Score a batch (synchronous: runs its own event loop only when the judge is needed).

        Args:
            items: B responses with their task and gold answers.
            progress: called with the number of items finished, as they finish.

        Returns:
            B RewardResults in input order. Raises JudgeError above the judge's error rate, CustomRewardError
            above `reward.custom.max_error_rate`.
        """
        rules = self._rules(items)
        if not self._judge_indices(items, rules):
            return self._finish(items, rules, {}, progress)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._judge_and_close(items, rules, progress))
        raise RuntimeError("HybridReward.score called inside a running event loop; use `await reward.ascore(items)`")

    async def ascore(self, items: list[RewardInput], progress: Callable[[int], None] | None = None) -> list[RewardResult]:
        """`score` for async callers; the judge client stays open for the next batch (close with aclose)."""
        rules = self._rules(items)
        return await self._judge_batch(items, rules, progress)

    async def aclose(self) -> None:
        if self.judge is not None:
            await self.judge.aclose()

    def _rules(self, items: list[RewardInput]) -> list[RuleOutcome]:
        """Rule outcomes of a batch; CustomRewardError when the custom function failed on too many."""
        rules = [self.rule(item) for item in items]
        if self.custom is not None:
            self.custom.check_errors([(item.task, r.custom_error) for item, r in zip(items, rules) if r.custom])
        return rules

    def rule(self, item: RewardInput) -> RuleOutcome:
        """Extraction and rule verdict of one response (golds are checked even without a prediction); for the
        tasks `reward.custom` covers, the custom function's score instead of the verdict."""
        if item.task not in TASKS:
            raise UserError(f"unknown task {item.task!r}; known: {', '.join(TASKS.names())}")
        name = TASKS.get(item.task).verifier
        if self.custom is not None and self.custom.applies(item.task):
            outcome = self.custom.score(item)
            return RuleOutcome(extract_prediction(item.response, self.cfg.require_think),
                               Verdict(outcome.score, outcome.metrics), name, custom=True, custom_error=outcome.error)
        if self.cfg.protocol == "published":
            extraction, verdict = published_rule(name, item.response, list(item.answers))
            return RuleOutcome(extraction, verdict, name)
        extraction = extract_prediction(item.response, self.cfg.require_think)
        opts = self.opts
        if name == "numeric":
            scales = tuple(sorted(set(stated_scales(item.question)) | set(stated_scales(item.context))))
            if scales:
                opts = dataclasses.replace(opts, scales=scales)
        verdict = VERIFIERS.get(name)(extraction.prediction or "", list(item.answers), opts)
        if extraction.prediction is None:
            verdict = Verdict(0.0, {k: 0.0 for k in verdict.metrics})
        return RuleOutcome(extraction, verdict, name)

    def judge_prediction(self, item: RewardInput, rule: RuleOutcome) -> str | None:
        """What the judge is shown for a response its rule scored 0; None when there is nothing to judge."""
        if self.cfg.protocol == "published" and rule.verifier == "numeric":
            return docmath_judge_prediction(item.response)
        return rule.extraction.prediction

    def _judge_indices(self, items: list[RewardInput], rules: list[RuleOutcome]) -> list[int]:
        if self.judge is None:
            return []
        return [i for i, (item, r) in enumerate(zip(items, rules))
                if r.judgeable and r.verifier in self.cfg.judge_verifiers and self.judge_prediction(item, r) is not None]

    async def _judge_and_close(self, items, rules, progress) -> list[RewardResult]:
        try:
            return await self._judge_batch(items, rules, progress)
        finally:
            await self.aclose()

    async def _judge_batch(self, items: list[RewardInput], rules: list[RuleOutcome], progress) -> list[RewardResult]:
        indices = self._judge_indices(items, rules)
        calls: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for i in indices:
            calls[(items[i].question, self.judge_prediction(items[i], rules[i]), format_golds(items[i].answers))].append(i)
        if progress is not None and len(items) > len(indices):
            progress(len(items) - len(indices))

        async def ask(key: tuple[str, str, str]) -> JudgeVerdict:
            verdict = await self.judge.judge(*key)
            if progress is not None:
                progress(len(calls[key]))
            return verdict

        keys = list(calls)
        verdicts = await asyncio.gather(*(ask(k) for k in keys))
        failed = [v for v in verdicts if v.equivalent is None]
        if keys and len(failed) / len(keys) > self.max_error_rate:
            raise JudgeError(
                f"the judge failed on {len(failed)} of {len(keys)} calls in this batch "
                f"({len(failed) / len(keys):.0%} > reward.judge.max_error_rate={self.max_error_rate:g}); "
                f"first error: {failed[0].error}")
        by_index = {i: v for k, v in zip(keys, verdicts) for i in calls[k]}
        return self._finish(items, rules, by_index, None)

    def _finish(self, items, rules, verdicts: dict[int, JudgeVerdict], progress) -> list[RewardResult]:
        results = []
        for i, (item, rule) in enumerate(zip(items, rules)):
            verdict = verdicts.get(i)
            judge_score = None if verdict is None or verdict.equivalent is None else float(verdict.equivalent)
            penalty = self._penalty(item)
            base = max(rule.verdict.score, judge_score) if judge_score else rule.verdict.score   # only a yes lifts
            results.append(RewardResult(
                score=base + penalty, rule_score=rule.verdict.score,
                judge_score=judge_score, prediction=rule.extraction.prediction, status=rule.extraction.status,
                penalty=penalty, metrics=dict(rule.verdict.metrics),
                judge_error=verdict.error if verdict is not None else None,
                judge_cached=verdict.cached if verdict is not None else False,
                custom=rule.custom, custom_error=rule.custom_error))
        if progress is not None and items:
            progress(len(items))
        return results

    def _penalty(self, item: RewardInput) -> float:
        overlong = self.cfg.overlong
        if not overlong.enabled:
            return 0.0
        if item.max_response_tokens is None:
            raise ValueError("reward.overlong.enabled is set but RewardInput.max_response_tokens is None")
        if overlong.buffer > item.max_response_tokens:
            raise ConfigError(f"reward.overlong.buffer ({overlong.buffer}) exceeds the response limit "
                              f"({item.max_response_tokens} tokens); set a smaller buffer")
        return overlong_penalty(item.response_tokens, item.max_response_tokens, overlong.buffer)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(results: list[RewardResult]) -> dict[str, float]:
    """Batch metrics. Fractions are over all results unless said otherwise; {} for no results.

    reward/mean, reward/std, reward/max, reward/min: final score. reward/rule: mean rule score.
    reward/judge: mean judge score with not-asked as 0 (the judge's share: reward/rule + reward/judge
    = mean of max(rule, judge)). reward/judge_calls: fraction judged. reward/judge_errors: count of failed judge calls;
    reward/judge_error_rate: failed / judged; reward/judge_cached: cached / judged.
    reward/unfinished_think, reward/no_answer: fractions by status. reward/overlong_penalty: mean
    penalty; reward/overlong_frac: fraction penalised. reward/<m> for every verifier metric m
    (em, f1, parsed; custom/<key> of a custom function's dict): mean over the results that report it.
    With `reward.custom`: reward/custom (fraction it scored), reward/custom_errors (count of failed calls).
    """
    if not results:
        return {}
    n = len(results)
    scores = [r.score for r in results]
    mean = _mean(scores)
    asked = [r for r in results if r.judge_asked]
    errors = sum(1 for r in asked if r.judge_error is not None)
    out = {
        "reward/mean": mean,
        "reward/std": (sum((s - mean) ** 2 for s in scores) / n) ** 0.5,
        "reward/max": max(scores),
        "reward/min": min(scores),
        "reward/rule": _mean([r.rule_score for r in results]),
        "reward/judge": _mean([r.judge_score or 0.0 for r in results]),
        "reward/judge_calls": len(asked) / n,
        "reward/judge_errors": float(errors),
        "reward/judge_error_rate": errors / len(asked) if asked else 0.0,
        "reward/judge_cached": sum(r.judge_cached for r in asked) / len(asked) if asked else 0.0,
        "reward/unfinished_think": sum(r.status == "unfinished_think" for r in results) / n,
        "reward/no_answer": sum(r.status == "no_answer" for r in results) / n,
        "reward/overlong_penalty": _mean([r.penalty for r in results]),
        "reward/overlong_frac": sum(r.penalty < 0 for r in results) / n,
    }
    custom = [r for r in results if r.custom]
    if custom:
        out["reward/custom"] = len(custom) / n
        out["reward/custom_errors"] = float(sum(r.custom_error is not None for r in custom))
    per_metric: dict[str, list[float]] = defaultdict(list)
    for r in results:
        for key, value in r.metrics.items():
            per_metric[key].append(value)
    for key, values in sorted(per_metric.items()):
        out[f"reward/{key}"] = _mean(values)
    return out
