"""Chat examples, labels on the reply only, step plans, first-fit packing, micro-batches."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from longrl.errors import UserError
from longrl.sft.packing import (
    IGNORE,
    Example,
    collate,
    encode_example,
    encode_examples,
    micro_batches,
    pack_rows,
    plan_steps,
    split_examples,
)


def test_labels_cover_exactly_the_reply_and_end_of_turn(tokenizer, samples):
    sample = samples[1]
    example = encode_example(tokenizer, sample)
    prompt_text = tokenizer.decode(example.ids[:example.n_prompt])
    assert prompt_text.endswith("<|im_start|>assistant\n")            # the generation prompt, nothing of the reply
    assert sample.question in prompt_text
    assert tokenizer.decode(example.ids[example.n_prompt:]) == sample.trace + "<|im_end|>"
    batch = collate([example], [[0]])
    targets = batch.labels[0][batch.labels[0] != IGNORE]
    assert targets.tolist() == example.ids[example.n_prompt:]       # every reply token, end-of-turn included
    assert batch.n_labels == example.n_labels == len(targets)


def test_a_template_that_opens_the_think_block_is_not_given_a_second_one(tokenizer, samples):
    import copy

    from longrl.sft.packing import reply_after

    r1_style = copy.deepcopy(tokenizer)
    r1_style.chat_template = tokenizer.chat_template.replace("assistant\\n' }}", "assistant\\n<think>\\n' }}")
    example = encode_example(r1_style, samples[1])
    assert tokenizer.decode(example.ids[:example.n_prompt]).endswith("assistant\n<think>\n")
    reply = tokenizer.decode(example.ids[example.n_prompt:])
    assert reply == samples[1].trace.removeprefix("<think>") + "<|im_end|>"
    assert reply_after("x<think>\n", "<think>\nA</think>B") == "A</think>B"
    assert reply_after("x\n", "<think>A</think>B") == "<think>A</think>B"


def test_a_sample_without_a_trace_is_refused(tokenizer, samples):
    bare = replace(samples[0], meta={})
    with pytest.raises(UserError, match="meta.trace"):
        encode_example(tokenizer, bare)


def test_collate_matches_a_reference_loop():
    rng = random.Random(0)
    examples = [Example(f"e{i}", [rng.randrange(1, 50) for _ in range(n)], p) for i, (n, p) in
                enumerate([(7, 3), (5, 4), (9, 0), (4, 2), (6, 6)])]
    rows = [[2, 3], [0, 1], [4]]
    batch = collate(examples, rows, pad_id=0)
    width = max(sum(examples[i].n_tokens for i in row) for row in rows)
    assert batch.input_ids.shape == (3, width)
    for r, row in enumerate(rows):
        ids, pos, labels = [], [], []
        for i in row:
            ex = examples[i]
            for t in range(ex.n_tokens):            # position t predicts token t + 1 when that is a reply token
                ids.append(ex.ids[t])
                pos.append(t)
                labels.append(ex.ids[t + 1] if t + 1 < ex.n_tokens and t + 1 >= ex.n_prompt else IGNORE)
        pad = width - len(ids)
        assert batch.input_ids[r].tolist() == ids + [0] * pad
        assert batch.position_ids[r].tolist() == pos + [0] * pad
        assert batch.labels[r].tolist() == labels + [IGNORE] * pad
    assert batch.segments == [[9, 4], [7, 5], [6]]
    assert batch.n_labels == sum(e.n_labels for e in examples) == 4 + 1 + 8 + 2 + 0
    assert batch.n_tokens == sum(e.n_tokens for e in examples)


def test_pack_rows_first_fit_decreasing():
    assert pack_rows([6, 3, 5, 2], 8) == [[0, 3], [2, 1]]
    assert pack_rows([10, 2], 8) == [[0], [1]]                       # too long: a row of its own
    rng = random.Random(1)
    for _ in range(20):
        lengths = [rng.randint(1, 40) for _ in range(rng.randint(1, 30))]
        rows = pack_rows(lengths, 50)
        assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in row) <= 50 for row in rows)
        # first fit: no later row's first example would have fitted in an earlier row
        for r, row in enumerate(rows):
            for earlier in rows[:r]:
                assert sum(lengths[i] for i in earlier) + lengths[row[0]] > 50


def test_plan_steps_covers_each_epoch_once_within_the_budget():
    lengths = [random.Random(2).randint(5, 30) for _ in range(40)]
    plan = plan_steps(lengths, batch_tokens=100, seed=3, epochs=2)
    flat = [i for step in plan for i in step]
    assert sorted(flat) == sorted(list(range(40)) * 2)
    assert sorted(flat[:40]) == list(range(40))                      # epoch 1 complete before epoch 2 starts
    assert all(sum(lengths[i] for i in step) <= 100 for step in plan)
    assert plan == plan_steps(lengths, batch_tokens=100, seed=3, epochs=2)
    assert plan != plan_steps(lengths, batch_tokens=100, seed=4, epochs=2)
    half = plan_steps(lengths, batch_tokens=100, seed=3, epochs=0.5)
    assert sum(len(s) for s in half) == 20
    fixed = plan_steps(lengths, batch_tokens=100, seed=3, steps=50)
    assert len(fixed) == 50 and fixed[:len(plan) - 1] == plan[:-1]  # the same stream, cut at 50 steps
    assert plan_steps([5, 5, 5, 5], batch_tokens=10, seed=0) == plan_steps([5, 5, 5, 5], 10, 0)
    assert [len(s) for s in plan_steps([5, 5, 5, 5], batch_tokens=10, seed=0)] == [2, 2]


def test_micro_batches_respect_the_budget_and_keep_every_example():
    rng = random.Random(5)
    examples = [Example(f"e{i}", list(range(rng.randint(10, 120))), 5) for i in range(30)]
    batches = micro_batches(examples, micro_batch_tokens=300, row_tokens=150)
    assert sum(b.n_tokens for b in batches) == sum(e.n_tokens for e in examples)
    assert sorted(n for b in batches for row in b.segments for n in row) == sorted(e.n_tokens for e in examples)
    assert all(b.input_ids.numel() <= 300 or b.input_ids.shape[0] == 1 for b in batches)
    assert all(b.input_ids.shape[1] <= 150 for b in batches)


def test_long_examples_are_dropped_and_counted(tokenizer, samples):
    lengths = [encode_example(tokenizer, s).n_tokens for s in samples]
    limit = sorted(lengths)[len(lengths) // 2]
    kept, dropped = encode_examples(tokenizer, samples, max_seq_tokens=limit)
    assert dropped == sum(n > limit for n in lengths) and dropped > 0
    assert len(kept) + dropped == len(samples) and all(e.n_tokens <= limit for e in kept)


def test_split_keeps_the_replies_of_one_item_together():
    examples = [Example(f"q{i}#t{j}", [1, 2, 3], 1, group=f"q{i}") for i in range(20) for j in range(3)]
    train, held = split_examples(examples, 0.2, seed=0)
    assert len(held) == 12 and len(train) == 48
    assert not {e.group for e in train} & {e.group for e in held}
    assert split_examples(examples, 0.0, seed=0) == (examples, [])


def test_packing_changes_no_loss_and_no_gradient(tokenizer, samples, tiny_model):
    """Per-token losses (and gradients) of packed rows equal each example run alone (fp32, 1e-5)."""
    import torch.nn.functional as F

    from longrl.engine.packed import packed_attention
    from longrl.sft.trainer import token_nll

    examples, _ = encode_examples(tokenizer, samples[:7])
    batches = micro_batches(examples, micro_batch_tokens=4 * 700, row_tokens=700)
    assert len(batches) == 1
    batch = batches[0]
    assert batch.input_ids.shape[0] < len(examples)                   # several examples share rows
    assert any(len(row) > 1 for row in batch.segments) and (batch.input_ids.shape[1] > min(map(sum, batch.segments)))
    with packed_attention(tiny_model):
        packed = token_nll(tiny_model, batch)
    packed.sum().backward()
    packed_grads = [p.grad.clone() for p in tiny_model.parameters()]
    tiny_model.zero_grad()
    order = [i for row in pack_rows([e.n_tokens for e in examples], 700) for i in row]
    alone = []
    for i in order:                                                   # the rows' left-to-right order
        ex = examples[i]
        ids = torch.tensor([ex.ids])
        logits = tiny_model(input_ids=ids).logits[0]                   # plain HF forward, sdpa
        alone.append(F.cross_entropy(logits[ex.n_prompt - 1:-1], ids[0, ex.n_prompt:], reduction="none"))
    alone = torch.cat(alone)
    alone.sum().backward()
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-5)
    for got, want in zip(packed_grads, (p.grad for p in tiny_model.parameters())):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert tiny_model.config._attn_implementation == "sdpa"           # restored after the block


def test_activation_checkpointing_gives_the_same_gradients(tokenizer, samples, tiny_model):
    from longrl.engine.packed import packed_attention
    from longrl.sft.trainer import token_nll

    examples, _ = encode_examples(tokenizer, samples[:4])
    batch = micro_batches(examples, 4000, 1000)[0]
    grads = []
    for checkpointing in (False, True):
        tiny_model.zero_grad()
        if checkpointing:
            from longrl.models.loading import enable_activation_checkpointing

            enable_activation_checkpointing(tiny_model)
        tiny_model.train()
        with packed_attention(tiny_model):                            # the recomputing backward runs inside too
            token_nll(tiny_model, batch).sum().backward()
        grads.append([p.grad.clone() for p in tiny_model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_collate_carries_label_weights_aligned_with_labels():
    rng = random.Random(1)
    plain = Example("p", [rng.randrange(1, 50) for _ in range(6)], 2)
    weighted = Example("w", [rng.randrange(1, 50) for _ in range(5)], 2, weights=(0.0, 0.0, 0.5, 1.0, 0.25))
    batch = collate([plain, weighted], [[0, 1]], pad_id=0)
    want = []
    for ex in (plain, weighted):                      # position t carries the weight of predicting token t + 1
        for t in range(ex.n_tokens):
            target = t + 1
            if target >= ex.n_tokens or target < ex.n_prompt:
                want.append(0.0)
            else:
                want.append(1.0 if ex.weights is None else ex.weights[target])
    assert batch.weights[0].tolist() == want
    assert collate([plain], [[0]]).weights is None    # no example with weights: no tensor, plain mean


def test_weighted_step_loss_matches_a_naive_weighted_mean(tokenizer, samples, tiny_model):
    """label_weights/weight_total give sum(w * nll) / sum(w) over a step, as a per-example loop computes it."""
    import torch.nn.functional as F

    from longrl.engine.packed import packed_attention
    from longrl.sft.trainer import label_weights, token_nll, weight_total

    rng = random.Random(2)
    examples = [replace(e, weights=tuple(rng.choice([0.1, 1.0]) for _ in e.ids))
                for e in encode_examples(tokenizer, samples[:4])[0]]
    batches = micro_batches(examples, micro_batch_tokens=700, row_tokens=700)
    assert len(batches) > 1
    total = sum(weight_total(b) for b in batches)
    with torch.no_grad(), packed_attention(tiny_model):
        got = sum(float((token_nll(tiny_model, b) * label_weights(b)).sum()) for b in batches) / total
    num = den = 0.0
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex.ids])
            nll = F.cross_entropy(tiny_model(input_ids=ids).logits[0, :-1], ids[0, 1:], reduction="none")
            for t in range(ex.n_prompt, ex.n_tokens):  # token t, predicted at position t - 1
                num += ex.weights[t] * float(nll[t - 1])
                den += ex.weights[t]
    assert total == pytest.approx(den)
    assert got == pytest.approx(num / den, rel=1e-5)
