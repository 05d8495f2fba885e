"""Demonstrations for warm-up SFT: from programmatic traces, or from a teacher with rejection sampling.

    longrl distill --from-traces --input data.jsonl --out demos.jsonl
    longrl distill --config configs/distill.yaml --input data.jsonl --out demos.jsonl sft.teacher.samples=8

    stats = demos_from_traces(samples, "demos.jsonl")                 # verified traces -> demonstrations
    stats = distill(samples, "demos.jsonl", cfg.sft.teacher, cfg.reward)   # teacher, resumable

A demonstration is a Sample whose `meta.trace` is the reply to train on, so `longrl sft` reads
the output directly. From traces, each sample whose programmatic trace passes its task's rule
verifier is written as it is (a trace that fails is counted, never kept).

From a teacher, every item gets K replies (`sft.teacher.samples`) to the QwenLong-L1 prompt (`longrl.data.prompt`); each
reply is scored by the hybrid reward (`reward`: rule, then the judge if configured) against the
gold answers and only correct ones are kept (rejection sampling), at most `keep_per_item`. A kept
reply becomes the row `{item id}#t{j}` (j = its index among the K) with meta.trace = the reply,
meta.source_id = the item id, meta.teacher, meta.sample_index and meta.pass_rate. Every finished
item, kept or not, gets a line in the sidecar `demos.passrates.jsonl`:
`{"id", "task", "samples": K, "correct", "pass_rate", "kept", "teacher"}`.

Resumable: an item's rows are appended and flushed, then its pass-rate line (the commit record).
A rerun skips items already in the sidecar; a torn last line or rows of an item whose pass-rate
line never got written (a kill between the two) are dropped first, so nothing is duplicated and
no complete row is lost. Items whose requests or judge calls fail are not recorded and are tried
again by the next run; the run stops early when more than `max_error_rate` of the items fail.
Rows are written in the order items finish.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from longrl.config.reward import OverlongConfig, RewardConfig
from longrl.config.sft import TeacherConfig
from longrl.data.io import write_samples
from longrl.data.prompt import user_message
from longrl.data.schema import Sample
from longrl.errors import DataError, UserError
from longrl.files import atomic_open
from longrl.rewards.hybrid import HybridReward, RewardInput
from longrl.sft.teacher import TeacherClient, TeacherError

MIN_ITEMS_FOR_ERROR_RATE = 10


@dataclass
class DistillStats:
    items: int = 0                 # items given
    already_done: int = 0          # skipped: finished by an earlier run
    finished: int = 0              # finished by this run
    failed: int = 0                # requests or judge calls failed: not recorded, retried next run
    samples: int = 0               # replies scored
    correct: int = 0               # replies the reward marked correct
    kept: int = 0                  # demonstrations written
    errors: list[str] = field(default_factory=list)  # first few failure messages


def passrates_path(out: str | Path) -> Path:
    """`demos.jsonl` -> `demos.passrates.jsonl` (the sidecar of per-item pass rates)."""
    out = Path(out)
    return out.with_name(f"{out.name[:-len('.jsonl')] if out.name.endswith('.jsonl') else out.name}.passrates.jsonl")


def correctness_only(reward_cfg: RewardConfig | None) -> RewardConfig:
    """The reward settings demonstrations are judged by: correct or not, so no overlong shaping
    (a demonstration has no response limit; with shaping on, scoring one was a ValueError)."""
    return (reward_cfg or RewardConfig()).model_copy(update={"overlong": OverlongConfig()})


def demos_from_traces(samples: list[Sample], out: str | Path, reward_cfg: RewardConfig | None = None) -> DistillStats:
    """Write the samples whose `meta.trace` verifies (rule only) to `out`, atomically."""
    reward = HybridReward(correctness_only(reward_cfg).model_copy(update={"judge": None}))
    with_trace = [s for s in samples if isinstance(s.trace, str) and s.trace.strip()]
    results = reward.score([RewardInput(s.task, s.question, s.answers, s.trace) for s in with_trace])
    kept = [s for s, r in zip(with_trace, results) if r.rule_score >= 1.0]
    write_samples(out, kept)
    return DistillStats(items=len(samples), finished=len(with_trace), failed=len(samples) - len(with_trace),
                        samples=len(with_trace), correct=len(kept), kept=len(kept))


class DemoLedger:
    """The demonstrations file and its pass-rate sidecar, appended per finished item."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        if self.out.suffix != ".jsonl":
            raise UserError(f"--out {self.out}: demonstrations are appended as they finish, so the file must be .jsonl")
        self.sidecar = passrates_path(self.out)
        self._demo_fh = self._rate_fh = None

    def recover(self) -> set[str]:
        """Ids of finished items; drops a torn last line and rows of unfinished items (atomic rewrite).

        Files are streamed line by line (demonstrations carry whole documents) and rewritten only
        when something has to go.
        """
        _drop_lines(self.sidecar, lambda obj: True)
        finished = {obj["id"] for _, obj in _scan(self.sidecar) if obj is not None}
        _drop_lines(self.out, lambda obj: (obj.get("meta") or {}).get("source_id") in finished)
        return finished

    def __enter__(self) -> DemoLedger:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._demo_fh = open(self.out, "a", encoding="utf-8")
        self._rate_fh = open(self.sidecar, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc) -> None:
        self._demo_fh.close()
        self._rate_fh.close()

    def write_item(self, rows: list[Sample], rate: dict) -> None:
        """Append an item's demonstrations, make them durable, then its pass-rate line (the commit)."""
        for fh, lines in ((self._demo_fh, [r.to_dict() for r in rows]), (self._rate_fh, [rate])):
            fh.write("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())


def _scan(path: Path) -> Iterator[tuple[bytes, dict | None]]:
    """(raw line, object) per non-blank line of `path`; object None for a torn last line (no newline).

    Rows are written whole, newline last, so only the last line of a file can lack its newline (a
    kill mid-write); any other line that does not parse means the file was edited: DataError.
    """
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                yield raw, None
                return
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                raise DataError(str(path), f"line {number}", None, f"malformed JSON ({exc}); not a torn last line, "
                                                                    "so the file was edited: fix or delete it") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
                raise DataError(str(path), f"line {number}", "id", "expected an object with a string id")
            yield raw, obj


def _drop_lines(path: Path, keep: Callable[[dict], bool]) -> None:
    """Rewrite `path` (atomically) without its torn last line and the rows `keep` rejects, if there are any."""
    if all(obj is not None and keep(obj) for _, obj in _scan(path)):
        return
    with atomic_open(path, "wb") as out:
        for raw, obj in _scan(path):
            if obj is not None and keep(obj):
                out.write(raw)


def demo_rows(item: Sample, replies: list[str], correct: list[bool], teacher: str, keep: int | None) -> list[Sample]:
    """The kept demonstrations of one item: correct replies in sample order, at most `keep`."""
    meta = {k: v for k, v in item.meta.items() if k != "trace"}
    rate = sum(correct) / len(replies)
    rows = [Sample(id=f"{item.id}#t{j}", task=item.task, context=item.context, question=item.question,
                   answers=list(item.answers), choices=item.choices,
                   meta={**meta, "trace": text, "source_id": item.id, "teacher": teacher, "sample_index": j,
                         "pass_rate": rate})
            for j, (text, ok) in enumerate(zip(replies, correct)) if ok]
    return rows[:keep] if keep is not None else rows


async def _distill_async(items: list[Sample], ledger: DemoLedger, teacher: TeacherClient, reward: HybridReward,
                         stats: DistillStats, progress: Callable[[int], None]) -> None:
    cfg = teacher.cfg
    queue: asyncio.Queue[Sample] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def run_item(item: Sample) -> None:
        replies = await teacher.sample([{"role": "user", "content": user_message(item)}])
        inputs = [RewardInput(item.task, item.question, item.answers, text) for text in replies]
        results = await reward.ascore(inputs)
        failed = [r.judge_error for r in results if r.judge_error]
        if failed:
            raise TeacherError(f"judge failed on {len(failed)} of {len(results)} replies: {failed[0]}")
        correct = [max(r.rule_score, r.judge_score or 0.0) >= 1.0 for r in results]
        rows = demo_rows(item, replies, correct, cfg.model, cfg.keep_per_item)
        ledger.write_item(rows, {"id": item.id, "task": item.task, "samples": len(replies), "correct": sum(correct),
                                 "pass_rate": sum(correct) / len(replies), "kept": len(rows), "teacher": cfg.model})
        stats.samples += len(replies)
        stats.correct += sum(correct)
        stats.kept += len(rows)
        stats.finished += 1

    async def worker() -> None:
        while not queue.empty():
            item = queue.get_nowait()
            try:
                await run_item(item)
            except TeacherError as exc:
                stats.failed += 1
                if len(stats.errors) < 5:
                    stats.errors.append(f"{item.id}: {exc}")
                attempted = stats.finished + stats.failed
                if attempted >= MIN_ITEMS_FOR_ERROR_RATE and stats.failed / attempted > cfg.max_error_rate:
                    raise UserError(f"teacher failures: {stats.failed} of {attempted} items failed (above "
                                    f"sft.teacher.max_error_rate={cfg.max_error_rate}); first: {stats.errors[0]}. "
                                    "Finished items are saved; rerun to continue.") from None
            progress(1)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(cfg.concurrency, len(items)) or 1)]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def distill(items: list[Sample], out: str | Path, teacher_cfg: TeacherConfig, reward_cfg: RewardConfig | None = None,
            teacher: TeacherClient | None = None, progress: Callable[[int], None] | None = None) -> DistillStats:
    """Sample K replies per item from the teacher, keep the correct ones; resumes from what `out` holds.

    Args:
        items: Samples with gold answers (ids unique).
        out: demonstrations file (.jsonl); the sidecar `*.passrates.jsonl` sits beside it.
        teacher_cfg: server, K, sampling, concurrency and retry settings.
        reward_cfg: how replies are scored (rule verifiers, optional judge); None = rule only.
        teacher: a client to use instead of building one from `teacher_cfg`.
        progress: called with 1 per item attempted.
    Returns:
        DistillStats of this run (`failed` > 0: rerun to retry those items).
    """
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise UserError("distill: item ids must be unique (they key the resume)")
    ledger = DemoLedger(out)
    done = ledger.recover()
    todo = [item for item in items if item.id not in done]
    stats = DistillStats(items=len(items), already_done=len(items) - len(todo))
    if not todo:
        return stats
    client = teacher or TeacherClient(teacher_cfg)
    reward = HybridReward(correctness_only(reward_cfg))

    async def main() -> None:
        try:
            with ledger:
                await _distill_async(todo, ledger, client, reward, stats, progress or (lambda n: None))
        finally:
            await client.aclose()
            await reward.aclose()

    asyncio.run(main())
    return stats
