"""The evaluation harness: prompts -> backend -> hybrid reward -> per-sample rows -> summary.

    summary = evaluate(backend, tokenizer, {"hotpotqa": suite}, cfg.eval, HybridReward(cfg.reward), Path("runs/eval"))
    summary["benchmarks"]["hotpotqa"]["score"], summary["average"]

Protocol (defaults as published, all in `EvalConfig`): the QwenLong-L1 prompt (`longrl.data.prompt`);
`eval.protocol` picks how documents are assembled and cut and how rules score (`published`: as the
paper's scripts, `strict`: longrl's, the default); the prompt middle-truncated to `max_input_tokens`
with the model's tokenizer; `samples` completions per item
at temperature 0.7, top_p 0.95, up to `max_new_tokens`; each scored by the hybrid reward (rule,
then the judge when configured; no overlong shaping in evaluation); benchmark score = mean over
items of the mean over samples, x100; average = unweighted mean over benchmarks. Each row also
records the rule score of the other protocol (`rule_scores`), so results.md shows both.

Resumable: every finished item's rows are appended to `OUT/<benchmark>/samples.jsonl` and
flushed at once; a rerun on the same OUT reads them back and sends no request for those items.
`OUT/<benchmark>/protocol.json` records what produced the rows (model, sampling, truncation,
judge, data file digest); a rerun with a different protocol is refused instead of mixing results.
Changing `limit`, `benchmarks` or `concurrency` is fine. Items run `backend.parallelism` chunks
at a time across all benchmarks; on a failure no new item starts, items in flight finish and are
recorded, then the error is raised.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longrl.config.eval import EvalConfig
from longrl.console import progress_bar
from longrl.data.schema import Sample
from longrl.errors import ConfigError
from longrl.eval.benchmarks import BENCHMARKS, Suite, check_unique_ids
from longrl.eval.prompts import EvalPrompt, prepare_prompt
from longrl.eval.protocol import ModelBackend, Request, params_from_config
from longrl.eval.records import SampleLog
from longrl.eval.report import build_summary, write_reports
from longrl.files import atomic_write_json
from longrl.rewards.hybrid import HybridReward, RewardInput
from longrl.rewards.verifiers import GoldError


def build_reward(cfg):
    """The evaluation's HybridReward for a whole Config: `eval.judge` (else `reward.judge`), the rule
    scoring of `eval.protocol`, no overlong shaping, no `reward.custom` (benchmarks keep their protocol)."""

    update = {"overlong": cfg.reward.overlong.model_copy(update={"enabled": False}), "protocol": cfg.eval.protocol,
              "custom": None}
    if cfg.eval.judge is not None:
        update["judge"] = cfg.eval.judge
    return HybridReward(cfg.reward.model_copy(update=update))


def item_seed(seed: int, *keys: str) -> int:
    """A 63-bit sampling seed from the run seed and the item's keys (stable across runs and batches)."""
    digest = hashlib.blake2b(json.dumps([seed, *keys]).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def as_suite(name: str, value: Suite | list[Sample]) -> Suite:
    """A Suite from a Suite or a plain list of Samples (version from the registry when the name is known)."""
    if isinstance(value, Suite):
        return value
    samples = list(value)
    check_unique_ids(samples, f"<suite {name}>")
    spec = BENCHMARKS.get(name) if name in BENCHMARKS else None
    version = getattr(spec, "version", None) or "custom"
    display = getattr(spec, "display", None) or name
    return Suite(name, samples, version, display)


def protocol_of(suite: Suite, backend: ModelBackend, tokenizer, cfg: EvalConfig, reward, seed: int) -> dict[str, Any]:
    """What determines a benchmark's rows; a resumed run must match it exactly."""
    judge = reward.cfg.judge
    return {
        "benchmark": suite.name, "version": suite.version, "data_sha256": suite.sha256, "model": backend.name,
        "tokenizer": getattr(tokenizer, "name_or_path", None), "max_input_tokens": cfg.max_input_tokens,
        "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k,
        "samples": cfg.samples, "seed": seed, "judge": judge.model if judge is not None else None,
        "require_think": reward.cfg.require_think, "numeric_rel_tol": reward.cfg.numeric_rel_tol,
        "protocol": cfg.protocol,
    }


def check_protocol(path: Path, protocol: dict[str, Any]) -> None:
    """Refuse a `protocol.json` that differs from `protocol` (ConfigError); writes nothing."""

    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        changed = [k for k in sorted(set(old) | set(protocol)) if old.get(k) != protocol.get(k)]
        if changed:
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {protocol.get(k)!r}" for k in changed[:6])
            raise ConfigError(f"{path.parent} holds results produced under another protocol ({detail}); "
                              "use another --out, or delete that folder to evaluate the benchmark again")


def evaluate(backend: ModelBackend, tokenizer, suites: dict[str, Suite | list[Sample]], cfg: EvalConfig, reward,
             out: str | Path, seed: int = 0, progress: str = "auto",
             on_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """Evaluate `backend` on `suites` under `cfg`; resumes from what `out` holds.

    Args:
        backend: a ModelBackend (LocalBackend, OpenAIBackend).
        tokenizer: the model's tokenizer (counts and truncates prompts).
        suites: benchmark name -> Suite or list of Samples (first `cfg.limit` items used).
        cfg: the protocol (EvalConfig).
        reward: a HybridReward (its judge, if any, is the evaluation judge).
        out: results folder: OUT/<benchmark>/samples.jsonl, OUT/summary.json, OUT/results.md.
        seed: run seed; item i's samples are seeded from (seed, benchmark, item id).
        progress: console progress mode (auto | rich | plain | none).
        on_start: called once every benchmark's protocol is checked, before anything is written
            (the command line writes OUT/config.yaml there, so a refused rerun changes nothing).
    Returns:
        The summary: {"benchmarks": {name: {"score", "n", "version", ...}}, "average", "model", "config"}.
    """
    return asyncio.run(aevaluate(backend, tokenizer, suites, cfg, reward, out, seed, progress, on_start))


async def aevaluate(backend: ModelBackend, tokenizer, suites: dict[str, Suite | list[Sample]], cfg: EvalConfig, reward,
                    out: str | Path, seed: int = 0, progress: str = "auto",
                    on_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """`evaluate` for callers already inside an event loop."""
    out = Path(out)
    if reward.cfg.overlong.enabled:
        raise ValueError("evaluation scores are not length-shaped: build the reward with build_reward(cfg) "
                         "(reward.overlong.enabled must be false)")
    if reward.cfg.protocol != cfg.protocol:
        raise ValueError(f"the reward scores under protocol {reward.cfg.protocol!r} but eval.protocol is {cfg.protocol!r}: "
                         "build the reward with build_reward(cfg)")
    resolved = {}
    for name, value in suites.items():
        suite = as_suite(name, value)
        if cfg.limit is not None:
            suite = Suite(suite.name, suite.samples[: cfg.limit], suite.version, suite.display, suite.source, suite.sha256)
        resolved[name] = suite
    logs: dict[str, SampleLog] = {}
    try:
        if hasattr(backend, "resolve_model_name"):
            await backend.resolve_model_name()  # the protocol names the served model
        protocols = {name: protocol_of(suite, backend, tokenizer, cfg, reward, seed) for name, suite in resolved.items()}
        for name, protocol in protocols.items():                 # every benchmark checked before anything is written
            check_protocol(out / name / "protocol.json", protocol)
        if on_start is not None:
            on_start()
        pending: list[tuple[str, Sample]] = []
        for name, suite in resolved.items():
            if not (out / name / "protocol.json").exists():
                atomic_write_json(out / name / "protocol.json", protocols[name])
            logs[name] = SampleLog.open(out / name / "samples.jsonl", cfg.samples)
            pending += [(name, s) for s in suite.samples if s.id not in logs[name].finished]
        await _run_items(backend, tokenizer, pending, logs, cfg, reward, seed, progress)
    finally:
        for log in logs.values():
            log.close()
        await backend.aclose()
        await reward.aclose()
    summary = build_summary(resolved, {name: log.finished for name, log in logs.items()}, cfg, backend.name, reward)
    write_reports(out, summary)
    return summary


class PromptPreparer:
    """Prepares prompts in worker threads (tokenizers release the GIL), at most one per CPU core at a
    time, so a 64-request window does not run 64 tokenizer passes against each other."""

    def __init__(self, tokenizer, max_input_tokens: int | None, with_ids: bool, protocol: str = "strict"):
        self.tokenizer, self.max_input_tokens, self.with_ids, self.protocol = tokenizer, max_input_tokens, with_ids, protocol
        self._slots = asyncio.Semaphore(max(1, os.cpu_count() or 1))

    async def prepare(self, sample: Sample) -> EvalPrompt:
        async with self._slots:
            return await asyncio.to_thread(prepare_prompt, self.tokenizer, sample, self.max_input_tokens, self.with_ids,
                                           self.protocol)


async def _run_items(backend: ModelBackend, tokenizer, pending: list[tuple[str, Sample]], logs: dict[str, SampleLog],
                     cfg: EvalConfig, reward, seed: int, progress: str) -> None:
    params = params_from_config(cfg)
    chunks = [pending[i: i + backend.batch_size] for i in range(0, len(pending), backend.batch_size)]
    queue = iter(chunks)
    failures: list[BaseException] = []
    preparer = PromptPreparer(tokenizer, cfg.max_input_tokens, backend.needs_ids, cfg.protocol)
    other = other_protocol_reward(reward)

    async def run_chunk(chunk: list[tuple[str, Sample]]) -> None:
        prompts = await asyncio.gather(*(preparer.prepare(s) for _, s in chunk))
        requests = [Request(f"{name}/{s.id}", p, item_seed(seed, name, s.id)) for (name, s), p in zip(chunk, prompts)]
        completions = await backend.complete(requests, cfg.samples, params)
        await _score_and_record(chunk, prompts, completions, logs, reward, other)

    async def worker(advance) -> None:
        for chunk in queue:
            if failures:
                return
            try:
                await run_chunk(chunk)
            except Exception as exc:  # noqa: BLE001 - re-raised below once the other workers have finished
                failures.append(exc)
                return
            advance(len(chunk))

    with progress_bar(len(pending), "eval", progress) as advance:
        await asyncio.gather(*(worker(advance) for _ in range(max(1, min(backend.parallelism, len(chunks))))))
    if failures:
        raise failures[0]


def other_protocol_reward(reward):
    """A rule-only HybridReward of the protocol `reward` does not use: each row records both rule
    scores of the same completion, for the side-by-side table of results.md."""
    other = "published" if reward.cfg.protocol == "strict" else "strict"
    return HybridReward(reward.cfg.model_copy(update={"protocol": other, "judge": None}))


def _both_rule_scores(reward, other, item, result) -> dict[str, float | None]:
    try:
        second = other.rule(item).verdict.score
    except GoldError:  # a gold one protocol can read and the other cannot (e.g. published reads only the first)
        second = None
    return {reward.cfg.protocol: result.rule_score, other.cfg.protocol: second}


async def _score_and_record(chunk, prompts, completions, logs: dict[str, SampleLog], reward, other=None) -> None:
    inputs = [RewardInput(task=s.task, question=s.question, answers=list(s.answers), response=c.text, response_tokens=c.tokens,
                          context=s.context)
              for (_, s), item in zip(chunk, completions) for c in item]
    results = await reward.ascore(inputs)
    position = 0
    for (name, sample), prompt, item in zip(chunk, prompts, completions):
        rows = []
        for j, completion in enumerate(item):
            result = results[position]
            position += 1
            rows.append({
                "id": sample.id, "sample": j, "task": sample.task, "prompt_tokens": prompt.tokens,
                "truncated_tokens": prompt.truncated_tokens, "completion": completion.text,
                "completion_tokens": completion.tokens, "finish": "length" if completion.truncated else "stop",
                "prediction": result.prediction, "status": result.status, "rule_score": result.rule_score,
                "judge_score": result.judge_score, "judge_error": result.judge_error, "judge_cached": result.judge_cached,
                "score": result.score, "metrics": result.metrics, "answers": list(sample.answers),
                **({"rule_scores": _both_rule_scores(reward, other, inputs[position - 1], result)} if other else {}),
            })
        logs[name].append_item(rows)
