"""`longrl pretrain`: make the tiny base model that already reasons over short documents.

    longrl pretrain --config configs/demo_base.yaml --out runs/base      # rerun the same command = resume
    longrl pretrain --out runs/toy pretrain.steps=50 pretrain.architecture.hidden_size=64

The method starts RL from a model that reasons well over short inputs (R1-Distill) and teaches it
long ones; this command makes longrl's own small stand-in, offline. It builds a random-init
Qwen2 model of shape `pretrain.architecture` with the shipped tokenizer and trains it with the
SFT loop (`longrl.sft.trainer.train_loop`: packed rows, loss on the reply only, AdamW, warmup +
decay, checkpoints, exact resume) on an endless stream of fresh synthetic items: step s draws
items of `pretrain.tasks` with prompt lengths in [min_length, max_length] from a generator
seeded by (run.seed, s) until `pretrain.batch_tokens` are filled, so a resumed run sees exactly
the data an uninterrupted one would. `pretrain.other_token_weight` < 1 focuses the loss on the
gold answers' value tokens (the looked-up names and numbers) and keeps the rest of the trace at
that weight (off by default; README, "The tiny base model", has what it did for the shipped base).
`pretrain.init_from` continues from an earlier model folder
(e.g. a previous run's `final/`, with other tasks or lengths) instead of a random init.

At the end it scores `pretrain.eval_items` held-out items (greedy decoding, the rule verifiers)
and reports accuracy per task and per prompt length; then it saves the model as
`DIR/final` in `pretrain.dtype_on_save`, reloads it from disk, checks that the weights are the
ones saved and scores it again, and writes `DIR/final/PROVENANCE.json` (config, git commit,
wall time, accuracy before and after the cast, file hashes). `final/` appears only once all of
that succeeded.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import torch

from longrl import __version__
from longrl.checkpoint import sha256
from longrl.config import Config
from longrl.config.model import ModelConfig
from longrl.config.reward import RewardConfig
from longrl.console import info
from longrl.data.prompt import encode_prompt
from longrl.data.synthetic import synthesize
from longrl.data.tokens import PieceTokenizer
from longrl.engine.distributed import launched
from longrl.engine.seeds import seed_everything, stream_seed
from longrl.errors import ConfigError
from longrl.files import atomic_dir
from longrl.models.loading import DTYPES, follow_progress_setting, load_policy, resolve_device
from longrl.models.tiny import build_tiny_model
from longrl.models.tokenizer import THINK_CLOSE, THINK_OPEN, load_default_tokenizer
from longrl.rewards.hybrid import HybridReward, RewardInput
from longrl.sft.packing import encode_example
from longrl.sft.trainer import LoopSettings, train_loop
from longrl.trackers import Trackers
from longrl.tracking import check_run_dir, holds_run_dir, prepare_run_dir, read_metrics

DEFAULT_EVAL_LENGTHS = 4
SEED_BITS = 48          # the item streams' seeds (the shipped base was trained on these exact streams)


def training_examples(pcfg, tokenizer, seed: int, step: int) -> list:
    """The examples of 1-based step `step`: fresh items until `batch_tokens` is filled (a function of seed and step).

    Pass a `longrl.data.tokens.PieceTokenizer` (the same one every step): its memo makes the stream
    ~10x faster than plain tokenizer calls (`longrl bench synth`), with the same ids.
    """
    rng = random.Random(f"longrl-pretrain:{seed}:{step}")
    examples, used = [], 0
    while True:
        task, length = rng.choice(pcfg.tasks), rng.randint(pcfg.min_length, pcfg.max_length)
        if examples and used + length > pcfg.batch_tokens:
            return examples                                   # not even the prompt fits: no need to make it
        sample = synthesize([task], 1, length, stream_seed("pretrain", seed, step, len(examples), bits=SEED_BITS),
                            pcfg.hops, pcfg.distractors, tokenizer)[0]
        example = encode_example(tokenizer, sample)
        if pcfg.other_token_weight != 1.0:
            example = focus_on_answers(example, sample, tokenizer, pcfg.other_token_weight)
        if examples and used + example.n_tokens > pcfg.batch_tokens:
            return examples
        examples.append(example)
        used += example.n_tokens


def answer_token_ids(sample, tokenizer) -> set[int]:
    """Token ids of the gold answers' values ("Zebo, Ravu" -> the ids of " Zebo" and " Ravu")."""
    ids: set[int] = set()
    for answer in sample.answers:
        for value in answer.split(","):
            if value.strip():
                ids.update(tokenizer.encode(" " + value.strip(), add_special_tokens=False))
    return ids


def focus_on_answers(example, sample, tokenizer, other_weight: float):
    """`example` with loss weight 1 on reply tokens that are answer values and `other_weight` on the rest.

    A trace such as "The mentor of Gire is Tamo." is mostly tokens a model copies from the
    question or the format; the looked-up value is the one token that needs retrieval. Lowering
    the weight of the others keeps them learned while the retrieval signal is not drowned.
    """

    values = answer_token_ids(sample, tokenizer)
    weights = tuple(0.0 if t < example.n_prompt else (1.0 if token in values else other_weight)
                    for t, token in enumerate(example.ids))
    return dataclasses.replace(example, weights=weights)


def eval_items(pcfg, tokenizer, seed: int) -> list:
    """Held-out items: `eval_items` spread over the eval lengths, the tasks round-robin (rotated per length)."""
    lengths = list(pcfg.eval_lengths)
    if not lengths:
        span = pcfg.max_length - pcfg.min_length
        lengths = sorted({pcfg.min_length + round(span * i / (DEFAULT_EVAL_LENGTHS - 1)) for i in range(DEFAULT_EVAL_LENGTHS)})
    items = []
    for i, length in enumerate(lengths):
        n = pcfg.eval_items // len(lengths) + (1 if i < pcfg.eval_items % len(lengths) else 0)
        tasks = list(pcfg.tasks[i % len(pcfg.tasks):]) + list(pcfg.tasks[:i % len(pcfg.tasks)])
        if n:
            items += synthesize(tasks, n, length, stream_seed("pretrain-eval", seed, bits=SEED_BITS), pcfg.hops,
                                pcfg.distractors, tokenizer)
    return items


VALUE_LENGTHS = (176, 240, 312, 384)   # prompt lengths of the held-out retrieval items (the 176-384)
VALUE_HOPS = 8                         # look-ups per retrieval item


def retrieval_items(count: int, tokenizer, seed: int) -> list:
    """`count` held-out `lookup` items (8 look-ups each) spread over VALUE_LENGTHS."""
    items = []
    for i, length in enumerate(VALUE_LENGTHS):
        n = count // len(VALUE_LENGTHS) + (1 if i < count % len(VALUE_LENGTHS) else 0)
        if n:
            items += synthesize(["lookup"], n, length, stream_seed("pretrain-values", seed, bits=SEED_BITS), VALUE_HOPS, None, tokenizer)
    return items


@torch.no_grad()
def value_accuracy(model, tokenizer, samples: list) -> dict:
    """Teacher-forced accuracy on the looked-up values inside `<think>` (the retrieval measure), percent.

    Each sample runs with its gold demonstration; at every reply token inside the thinking block
    that is one of the gold answers' values, the model's most likely next token is compared with
    it. `miss_in_prompt` is the share of misses that name another token of the prompt (a wrong
    fact rather than noise).
    """
    device = model.get_input_embeddings().weight.device
    think_open, think_close = tokenizer.convert_tokens_to_ids(THINK_OPEN), tokenizer.convert_tokens_to_ids(THINK_CLOSE)
    was_training = model.training
    model.eval()
    hits = total = in_prompt = 0
    for sample in samples:
        example = encode_example(tokenizer, sample)
        predicted = model(input_ids=torch.tensor([example.ids], device=device)).logits[0].argmax(-1).tolist()
        values, prompt = answer_token_ids(sample, tokenizer), set(example.ids[:example.n_prompt])
        inside = False
        for t in range(example.n_prompt, len(example.ids)):
            token = example.ids[t]
            if token in (think_open, think_close):
                inside = token == think_open
            elif inside and token in values:
                total += 1
                hits += predicted[t - 1] == token
                in_prompt += predicted[t - 1] != token and predicted[t - 1] in prompt
    model.train(was_training)
    return {"value_accuracy": round(100 * hits / max(total, 1), 2), "values": total,
            "miss_in_prompt": round(100 * in_prompt / max(total - hits, 1), 2)}


@torch.no_grad()
def greedy_replies(model, tokenizer, samples: list, max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy replies to the QwenLong-L1 prompt (`longrl.data.prompt`) of each sample (left-padded batches of similar length)."""
    device = model.get_input_embeddings().weight.device
    prompts = [encode_prompt(tokenizer, s).ids for s in samples]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    pad = tokenizer.pad_token_id
    replies = [""] * len(prompts)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long, device=device)
        mask = torch.zeros((len(batch), width), dtype=torch.long, device=device)
        for row, i in enumerate(batch):
            ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i], device=device)
            mask[row, width - len(prompts[i]):] = 1
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        for row, i in enumerate(batch):
            replies[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True)
    model.train(was_training)
    return replies


def score_items(model, tokenizer, samples: list, pcfg) -> dict:
    """Greedy accuracy (rule verifiers) overall, per task and per target prompt length; percent."""
    replies = greedy_replies(model, tokenizer, samples, pcfg.eval_max_new_tokens, pcfg.eval_batch_size)
    results = HybridReward(RewardConfig()).score([RewardInput(s.task, s.question, s.answers, r) for s, r in zip(samples, replies)])
    by_task, by_length = defaultdict(list), defaultdict(list)
    for sample, result in zip(samples, results):
        by_task[sample.task].append(result.rule_score)
        by_length[str(sample.meta.get("length"))].append(result.rule_score)

    def pct(values: list[float]) -> float:
        return round(100 * sum(values) / max(len(values), 1), 2)

    return {"n": len(samples), "overall": pct([r.rule_score for r in results]),
            "by_task": {k: pct(v) for k, v in sorted(by_task.items())},
            "by_length": {k: pct(v) for k, v in sorted(by_length.items(), key=lambda kv: int(kv[0]))},
            "examples": [{"id": s.id, "reply": r, "answers": s.answers} for s, r in list(zip(samples, replies))[:3]]}


def git_state() -> dict:
    """Commit and dirtiness of the checkout longrl runs from (None outside a git checkout)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def save_checked(model, tokenizer, final: Path, cfg, items: list, probes: list, provenance: dict, began: float) -> dict:
    """Save in dtype_on_save, reload from disk, check the weights and score again (held-out `items`, retrieval
    `probes`); then publish `final/`."""
    dtype = DTYPES[cfg.pretrain.dtype_on_save]
    saved = copy.deepcopy(model).to(dtype)
    with atomic_dir(final) as tmp:
        saved.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        reloaded = load_policy(ModelConfig(path=str(tmp), dtype="float32"), next(model.parameters()).device)
        for (name, want), got in zip(saved.state_dict().items(), reloaded.state_dict().values()):
            if not torch.equal(want.float(), got):
                raise RuntimeError(f"{tmp}: {name} did not reload as saved")
        provenance["accuracy"] = score_items(reloaded, tokenizer, items, cfg.pretrain)
        if probes:
            provenance["retrieval"] = value_accuracy(reloaded, tokenizer, probes)
        provenance["files"] = {p.name: sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        provenance["this_run_wall_s"] = round(time.perf_counter() - began, 1)
        (tmp / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return provenance


@holds_run_dir
def pretrain(cfg: Config, out: str | Path) -> dict:
    """Train (or resume) the base model as `cfg.pretrain` says; returns its PROVENANCE (accuracy included).

    A run whose `final/PROVENANCE.json` exists returns that record at once.
    """
    pcfg = cfg.pretrain
    if launched():
        raise ConfigError("longrl pretrain runs in one process (the tiny base model needs no sharding); "
                          "start it without torchrun")
    out = check_run_dir(out, cfg)                              # refuses a different config; writes nothing
    final = out / "final"
    if (final / "PROVENANCE.json").exists():
        info(f"pretrain: {final} is complete; use another --out to train again")
        return json.loads((final / "PROVENANCE.json").read_text())
    began = time.perf_counter()
    seed_everything(cfg.run)
    follow_progress_setting()                                  # transformers' "Writing model shards" bar too
    tokenizer = load_default_tokenizer()
    device = resolve_device(cfg.run.device)
    if pcfg.init_from:                                         # continue an earlier base (its own shape), in fp32
        model = load_policy(ModelConfig(path=pcfg.init_from, dtype="float32"), device)
    else:
        model = build_tiny_model(pcfg.architecture, tokenizer).to(device)
    prepare_run_dir(out, cfg)                                  # the run starts: config.yaml, log.txt
    items = eval_items(pcfg, tokenizer, cfg.run.seed)
    settings = LoopSettings(phase="pretrain", steps=pcfg.steps, lr=pcfg.lr, min_lr_ratio=pcfg.min_lr_ratio,
                            warmup_steps=pcfg.warmup_steps, schedule=pcfg.schedule, weight_decay=pcfg.weight_decay,
                            grad_clip=pcfg.grad_clip, micro_batch_tokens=pcfg.micro_batch_tokens or pcfg.batch_tokens,
                            row_tokens=pcfg.row_tokens, logits_chunk_mb=pcfg.logits_chunk_mb,
                            bf16_autocast=pcfg.bf16_autocast, eval_every=pcfg.eval_every,
                            save_every=pcfg.save_every, keep_checkpoints=cfg.run.keep_checkpoints,
                            log_every=cfg.run.log_every, progress=cfg.run.progress, betas=tuple(pcfg.betas))
    info(f"pretrain: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {pcfg.steps} steps of "
         f"{pcfg.batch_tokens} tokens, tasks {','.join(pcfg.tasks)}, prompts of {pcfg.min_length}-{pcfg.max_length} tokens")
    fast = PieceTokenizer(tokenizer)                           # memoised, exact: the data stream's tokenizer
    train_loop(model, lambda step: training_examples(pcfg, fast, cfg.run.seed, step), settings, out,
               [encode_example(tokenizer, s) for s in items], tokenizer.pad_token_id, Trackers.from_config(cfg, out))
    rows = read_metrics(out / "metrics.jsonl")
    provenance = {
        "longrl_version": __version__, "git": git_state(), "torch": torch.__version__,
        "config": cfg.model_dump(mode="json"), "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": pcfg.dtype_on_save, "steps": pcfg.steps, "tokens_seen": sum(r.get("batch/tokens", 0) for r in rows),
        "train_wall_s": round(sum(r.get("time/step", 0) + r.get("time/eval", 0) for r in rows), 1),
        "final_eval_loss": next((r["loss/eval"] for r in reversed(rows) if r.get("loss/eval") is not None), None),
        "accuracy_before_cast": score_items(model, tokenizer, items, pcfg),
    }
    probes = retrieval_items(pcfg.value_items, tokenizer, cfg.run.seed) if pcfg.value_items else []
    if probes:
        provenance["retrieval_before_cast"] = value_accuracy(model, tokenizer, probes)
    return save_checked(model, tokenizer, final, cfg, items, probes, provenance, began)
