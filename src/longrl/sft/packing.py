"""SFT examples: chat-formatted demonstrations, packed into rows by a token budget.

    examples, dropped = encode_examples(tokenizer, samples, max_seq_tokens=4096)   # loss on the reply only
    steps = plan_steps([e.n_tokens for e in examples], batch_tokens=8192, epochs=2.0, seed=0)
    for batch in micro_batches([examples[i] for i in steps[0]], micro_batch_tokens=8192, row_tokens=2048):
        batch.input_ids, batch.position_ids, batch.labels, batch.segments       # (R, T) x 3, lengths per row

An example is one user turn (the QwenLong-L1 prompt (`longrl.data.prompt`), `longrl.data.prompt`) followed by the
assistant's reply: the demonstration (`meta.trace`: `<think>...</think>` then the answer
sentence) and the end-of-turn token (the one the tokenizer's chat template closes a reply with). Only reply tokens carry labels. When
the chat template already opens the thinking block (R1-Distill templates end with `<think>\n`),
the reply starts after it.

Packing puts several examples side by side in one row of at most `row_tokens` tokens (first-fit
decreasing), with positions restarting at 0 for each example. The attention that keeps packed
examples apart (block-diagonal causal, no mask of size row x row) is `longrl.engine.packed`;
together they make every example's per-token loss equal to what it is when run alone. Rows are
padded only up to the longest row of their micro-batch.

Labels are stored already shifted: `labels[r, t]` is the token position t must predict, or
IGNORE. The last token of an example predicts nothing, so no target ever crosses into the next
example of its row.

An example may carry per-token loss weights (`Example.weights`, as `pretrain.other_token_weight`
makes them); `PackedBatch.weights` holds them aligned with `labels`, and the training loop then
takes sum(w * nll) / sum(w) over the step instead of the plain mean.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from longrl.data.prompt import encode_prompt
from longrl.models.chat import end_of_turn_id
from longrl.data.schema import Sample
from longrl.engine.nll import IGNORE
from longrl.errors import UserError
from longrl.models.tokenizer import THINK_OPEN


@dataclass(frozen=True)
class Example:
    id: str
    ids: list[int]          # prompt tokens then reply tokens (the reply ends with the end-of-turn token)
    n_prompt: int           # the first n_prompt tokens are the prompt: no loss on them
    group: str = ""         # examples with the same group (one source item) stay on one side of a train/eval split
    weights: tuple[float, ...] | None = None  # loss weight of predicting each token of `ids` (None = 1 for every reply token)

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def n_labels(self) -> int:
        return len(self.ids) - max(self.n_prompt, 1)   # the first token has no predictor


@dataclass
class PackedBatch:
    input_ids: torch.Tensor      # (R, T) int64, pad id 0 after the last segment of a row
    position_ids: torch.Tensor   # (R, T) int64, restarting at 0 for every segment
    labels: torch.Tensor         # (R, T) int64, next-token targets on reply tokens, IGNORE elsewhere
    segments: list[list[int]]    # per row: the lengths of its examples, left to right
    n_tokens: int                # real (non-padding) tokens
    n_labels: int                # tokens that carry a loss
    weights: torch.Tensor | None = None  # (R, T) float32 loss weight of each label; None = all 1


def encode_example(tokenizer, sample: Sample, end_id: int | None = None) -> Example:
    """Tokenize `sample` as prompt + demonstration + end-of-turn; raises UserError without a trace.

    The end of turn is the token the tokenizer's chat template closes an assistant reply with
    (`models/chat.py`; the eos where the template says nothing), the token rollouts stop at;
    `end_id` passes it in when already known.
    """
    trace = sample.trace
    if not isinstance(trace, str) or not trace.strip():
        raise UserError(f"sample {sample.id!r} has no demonstration (meta.trace); make one with `longrl distill`")
    end_id = end_of_turn_id(tokenizer) if end_id is None else end_id
    if end_id is None:
        raise UserError("the tokenizer has no eos token and its chat template no end-of-turn token: "
                        "the end of the assistant turn cannot be marked")
    prompt = encode_prompt(tokenizer, sample)
    reply = tokenizer.encode(reply_after(prompt.text, trace), add_special_tokens=False) + [end_id]
    group = sample.meta.get("source_id") or sample.id
    return Example(id=sample.id, ids=list(prompt.ids) + reply, n_prompt=len(prompt.ids), group=str(group))


def reply_after(prompt_text: str, trace: str) -> str:
    """The part of `trace` the model writes after `prompt_text`.

    Chat templates of reasoning models (DeepSeek-R1-Distill, QwQ) end the generation prompt with
    `<think>\n`; the model then writes only the reasoning onwards, so the trace's own opening tag
    is not trained on twice. Example: prompt "...<|Assistant|><think>\n", trace "<think>a</think>B"
    -> "a</think>B".
    """
    if prompt_text.rstrip().endswith(THINK_OPEN) and trace.lstrip().startswith(THINK_OPEN):
        return trace.lstrip()[len(THINK_OPEN):].lstrip("\n")
    return trace


def encode_examples(tokenizer, samples: list[Sample], max_seq_tokens: int | None = None) -> tuple[list[Example], int]:
    """Encode every sample; those longer than `max_seq_tokens` are dropped and counted.

    Returns:
        (examples, dropped): kept examples in input order, and how many were too long.
    """
    kept, dropped = [], 0
    end_id = end_of_turn_id(tokenizer)
    for sample in samples:
        example = encode_example(tokenizer, sample, end_id)
        if max_seq_tokens is not None and example.n_tokens > max_seq_tokens:
            dropped += 1
            continue
        kept.append(example)
    return kept, dropped


def split_examples(examples: list[Example], eval_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, eval): about `eval_fraction` of the groups held out, chosen by `seed`; groups never straddle."""
    groups = sorted({e.group for e in examples})
    if eval_fraction <= 0 or len(groups) < 2:
        return list(examples), []
    random.Random(f"longrl-sft-split:{seed}").shuffle(groups)
    n_eval = min(len(groups) - 1, max(1, round(eval_fraction * len(groups))))
    held = set(groups[:n_eval])
    return [e for e in examples if e.group not in held], [e for e in examples if e.group in held]


def plan_steps(lengths: list[int], batch_tokens: int, seed: int, epochs: float = 1.0,
               steps: int | None = None) -> list[list[int]]:
    """Indices of the examples of each optimizer step: seeded epochs cut by a token budget.

    Each epoch visits the examples in a fresh order fixed by (seed, epoch); the stream is cut
    into steps of at most `batch_tokens` tokens (a single longer example makes a step of its
    own). The last epoch may be partial (`epochs=1.5`). With `steps` set, the stream runs for
    exactly that many steps, as many epochs as it takes.

    Example: lengths [5, 5, 5, 5], batch_tokens 10, epochs 1 -> two steps of two examples.
    """
    if not lengths:
        raise UserError("no SFT examples to train on")
    n = len(lengths)
    plan: list[list[int]] = []
    current: list[int] = []
    used = 0
    epoch = 0
    while True:
        order = list(range(n))
        random.Random(f"longrl-sft-order:{seed}:{epoch}").shuffle(order)
        if steps is None and epoch + 1 > epochs:
            order = order[: max(1, round((epochs - epoch) * n))] if epochs > epoch else []
        for index in order:
            if current and used + lengths[index] > batch_tokens:
                plan.append(current)
                if steps is not None and len(plan) == steps:
                    return plan
                current, used = [], 0
            current.append(index)
            used += lengths[index]
        epoch += 1
        if steps is None and epoch >= epochs:
            break
    if current:
        plan.append(current)
    return plan


def pack_rows(lengths: list[int], row_tokens: int) -> list[list[int]]:
    """First-fit decreasing: indices grouped into rows of at most `row_tokens` tokens.

    An example longer than `row_tokens` gets a row of its own. Rows come out in order of their
    first (longest) example; within a row, longest first.

    Example: lengths [6, 3, 5, 2], row_tokens 8 -> [[0, 3], [2, 1]] (6+2 and 5+3).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[int] = []
    for index in order:
        size = lengths[index]
        for r, room in enumerate(free):
            if size <= room:
                rows[r].append(index)
                free[r] -= size
                break
        else:
            rows.append([index])
            free.append(max(row_tokens - size, 0))
    return rows


def collate(examples: list[Example], rows: list[list[int]], pad_id: int = 0) -> PackedBatch:
    """Tensors of `rows` (indices into `examples`), padded to the longest row, on the CPU (the loop moves them)."""
    width = max(sum(examples[i].n_tokens for i in row) for row in rows)
    cpu = torch.device("cpu")
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=cpu)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long, device=cpu)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long, device=cpu)
    weighted = any(examples[i].weights is not None for row in rows for i in row)
    weights = torch.zeros((len(rows), width), dtype=torch.float32, device=cpu) if weighted else None
    segments = []
    n_labels = 0
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            ex = examples[i]
            end = start + ex.n_tokens
            ids = torch.tensor(ex.ids, dtype=torch.long, device=cpu)
            input_ids[r, start:end] = ids
            position_ids[r, start:end] = torch.arange(ex.n_tokens, device=cpu)
            # position p predicts token p + 1; reply tokens are ids[n_prompt:], predicted from n_prompt - 1 on
            first = max(ex.n_prompt - 1, 0)
            labels[r, start + first:end - 1] = ids[first + 1:]
            if weights is not None:
                weights[r, start + first:end - 1] = (torch.tensor(ex.weights[first + 1:], dtype=torch.float32, device=cpu)
                                                     if ex.weights is not None else 1.0)
            n_labels += ex.n_tokens - 1 - first
            start = end
        segments.append([examples[i].n_tokens for i in row])
    n_tokens = sum(e.n_tokens for row in rows for e in (examples[i] for i in row))
    return PackedBatch(input_ids, position_ids, labels, segments, n_tokens, n_labels, weights)


def micro_batches(examples: list[Example], micro_batch_tokens: int, row_tokens: int,
                  pad_id: int = 0) -> list[PackedBatch]:
    """Split one step's examples into packed micro-batches of about `micro_batch_tokens` tokens each.

    Rows are packed first (`pack_rows`), then consecutive rows are grouped while their padded
    size (rows x longest row) stays within the budget; a row that alone exceeds it forms its own
    micro-batch.
    """
    if not examples:
        return []
    rows = pack_rows([e.n_tokens for e in examples], row_tokens)
    batches: list[PackedBatch] = []
    group: list[list[int]] = []
    width = 0
    for row in rows:
        size = sum(examples[i].n_tokens for i in row)
        new_width = max(width, size)
        if group and new_width * (len(group) + 1) > micro_batch_tokens:
            batches.append(collate(examples, group, pad_id))
            group, new_width = [], size
        group.append(row)
        width = new_width
    batches.append(collate(examples, group, pad_id))
    return batches
