"""`longrl pretrain`: the per-step synthetic stream, and a toy run end to end (bf16 save, provenance)."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from longrl.checkpoint import sha256
from longrl.config import load_config
from longrl.pretrain import eval_items, training_examples

TOY = ["pretrain.architecture={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, "
       "intermediate_size: 64, max_position_embeddings: 1024}",
       "pretrain.steps=4", "pretrain.batch_tokens=1024", "pretrain.min_length=96", "pretrain.max_length=160",
       "pretrain.warmup_steps=1", "pretrain.eval_items=6", "pretrain.eval_max_new_tokens=8", "pretrain.eval_every=2",
       "pretrain.save_every=2", "run.progress=none", "run.torch_threads=2"]


def test_each_step_draws_its_own_fresh_items_deterministically(tokenizer):
    pcfg = load_config(None, TOY).pretrain
    first = training_examples(pcfg, tokenizer, seed=0, step=1)
    assert [e.ids for e in first] == [e.ids for e in training_examples(pcfg, tokenizer, seed=0, step=1)]
    second = training_examples(pcfg, tokenizer, seed=0, step=2)
    assert not {e.id for e in first} & {e.id for e in second}
    assert {e.id for e in first} != {e.id for e in training_examples(pcfg, tokenizer, seed=1, step=1)}
    assert 1024 - 160 - 60 < sum(e.n_tokens for e in first) <= 1024  # filled up to the budget (an item is <= 220 tokens)
    tasks = {e.id.split("-")[0] for step in range(1, 4) for e in training_examples(pcfg, tokenizer, 0, step)}
    assert tasks == {"docmath", "multihop", "choice"}


def test_held_out_items_spread_over_lengths_and_never_trained_on(tokenizer):
    pcfg = load_config(None, [*TOY, "pretrain.eval_items=9", "pretrain.eval_lengths=[100, 150]"]).pretrain
    items = eval_items(pcfg, tokenizer, seed=0)
    assert [s.meta["length"] for s in items] == [100] * 5 + [150] * 4
    trained = {e.id for step in range(1, 5) for e in training_examples(pcfg, tokenizer, 0, step)}
    assert not trained & {s.id for s in items}
    default = eval_items(load_config(None, [*TOY, "pretrain.eval_items=8"]).pretrain, tokenizer, seed=0)
    assert sorted({s.meta["length"] for s in default}) == [96, 117, 139, 160]


def test_toy_pretrain_end_to_end(tmp_path, capsys):
    from transformers.utils import logging as hf_logging

    from longrl.cli import main
    from longrl.config.model import ModelConfig
    from longrl.models.loading import load_policy
    from longrl.tracking import read_metrics

    out = tmp_path / "base"
    hf_logging.enable_progress_bar()               # as in a fresh process: transformers draws bars by default
    assert main(["pretrain", "--out", str(out), *TOY]) == 0
    printed = capsys.readouterr()
    assert "held-out greedy accuracy" in printed.out
    assert "Writing model shards" not in printed.err               # off a terminal no bar, even from scratch
    final = out / "final"
    provenance = json.loads((final / "PROVENANCE.json").read_text())
    assert provenance["files"]["model.safetensors"] == sha256(final / "model.safetensors")
    assert provenance["steps"] == 4 and provenance["config"]["pretrain"]["batch_tokens"] == 1024
    assert provenance["accuracy"]["n"] == 6 and set(provenance["accuracy"]["by_task"]) == {"docmath", "multihop", "choice"}
    assert set(provenance["accuracy"]["by_length"]) == {"96", "117", "139", "160"}
    assert "commit" in provenance["git"] and provenance["tokens_seen"] > 4 * 900
    with safe_open(str(final / "model.safetensors"), "pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.bfloat16}
    assert load_policy(ModelConfig(path=str(final))).config.hidden_size == 32
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(r["phase"] == "pretrain" for r in rows)
    assert [r["step"] for r in rows if "loss/eval" in r] == [2, 4]
    assert main(["pretrain", "--out", str(out), *TOY]) == 0          # complete: nothing redone
    assert json.loads((final / "PROVENANCE.json").read_text()) == provenance
    more = tmp_path / "more"                                          # continue from the saved base
    assert main(["pretrain", "--out", str(more), *TOY, "pretrain.steps=1", f"pretrain.init_from={final}"]) == 0
    assert json.loads((more / "final" / "PROVENANCE.json").read_text())["config"]["pretrain"]["init_from"] == str(final)


def test_focus_weights_the_looked_up_values_fully_and_the_rest_lightly(tokenizer):
    from longrl.data.synthetic import synthesize
    from longrl.pretrain import answer_token_ids, focus_on_answers
    from longrl.sft.packing import encode_example

    sample = synthesize(["lookup"], 1, 200, seed=3, hops=4, tokenizer=tokenizer)[0]
    example = focus_on_answers(encode_example(tokenizer, sample), sample, tokenizer, 0.1)
    values = sample.answers[0].split(", ")
    assert len(values) == 4 and answer_token_ids(sample, tokenizer) == {
        tokenizer.encode(" " + v, add_special_tokens=False)[0] for v in values}
    assert set(example.weights[:example.n_prompt]) == {0.0}
    reply = list(zip(example.ids[example.n_prompt:], example.weights[example.n_prompt:]))
    full = [tokenizer.decode([t]).strip() for t, w in reply if w == 1.0]
    assert full == values + values                   # each value in the trace, then in the answer sentence
    assert {w for _, w in reply if w != 1.0} == {0.1}


def test_focus_is_off_by_default_and_on_in_the_step_stream(tokenizer):
    plain = load_config(None, TOY).pretrain
    assert all(e.weights is None for e in training_examples(plain, tokenizer, seed=0, step=1))
    focused = load_config(None, TOY + ["pretrain.other_token_weight=0.2"]).pretrain
    examples = training_examples(focused, tokenizer, seed=0, step=1)
    assert all(e.weights is not None and len(e.weights) == len(e.ids) for e in examples)
    assert [e.ids for e in examples] == [e.ids for e in training_examples(plain, tokenizer, seed=0, step=1)]
