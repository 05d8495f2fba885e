"""Warm-up SFT: one readable loop over packed demonstrations (the QwenLong-L1 recipe, step 1).

    longrl sft --config configs/demo.yaml --out runs/sft                 # rerun the same command = resume
    longrl sft --config configs/demo.yaml --out runs/sft sft.lr=2e-5 sft.epochs=2

    final = train_sft(cfg, Path("runs/sft"))              # Python: returns runs/sft/final
    final = train_sft(cfg, out, examples=samples)         # Samples whose meta.trace is the reply

Each demonstration is a chat example: user = the QwenLong-L1 prompt (`longrl.data.prompt`) over the document, assistant =
the trace (`<think>...</think>` + answer sentence) and the end-of-turn token; the loss is the
negative log-likelihood of the assistant tokens only, averaged over all assistant tokens of the
optimizer step (token-level, across micro-batches). Examples are packed into rows of
`sft.row_tokens` with block-diagonal causal attention (`engine/packed.py`), so packing changes no
example's loss. Steps are cut from seeded epochs by a token budget (`sft.batch_tokens`), so the
data of step s is a pure function of (data, seed, s): resume needs no data cursor.

Per step: AdamW, linear warmup then constant / cosine / linear decay, global grad-norm clip. Every
`sft.eval_every` steps (and at the last) the loss on held-out items (`sft.eval_fraction`). Every
`run.save_every` steps (and at the last) an atomic checkpoint (`longrl.checkpoint`); rerunning on
the same `--out` resumes from the newest one and ends with the same weights as an uninterrupted
run. The model goes to `DIR/final` (config + safetensors + tokenizer, written atomically).

Weights and AdamW state are fp32; `model.dtype: bfloat16` computes in bf16 (autocast on one
device, FSDP2 mixed precision under torchrun), as does `sft.bf16_autocast: true`: 1.2-1.7x faster on
CPUs with AMX (`longrl bench sft`). Long demonstrations fit by lowering `sft.micro_batch_tokens` and
setting `model.gradient_checkpointing: true`.

Under `torchrun --nproc_per_node N -m longrl.cli sft ...` the model is sharded with FSDP2
(`engine/sharding.py`); each rank packs and trains on every N-th example of a step, the loss is
normalised by the reply tokens of the whole step (summed over ranks), and rank 0 alone writes
metrics; checkpoints are sharded and `final/` is a plain Hugging Face folder. With
`sft.sequence_parallel: N` (Ulysses, `engine/ulysses.py`) N consecutive ranks share each example
share and split every packed row's positions among them (world / N data replicas).

With `model.lora` only LoRA adapters train (`models/lora.py`; checkpoints hold the adapters alone) and
`final/` is the merged model or the adapter folder (`model.lora.final`); LoRA runs in one process.

`train_loop` is the loop itself; `longrl pretrain` runs it too, on a stream of fresh synthetic
items instead of a fixed plan. metrics.jsonl keys: step, phase, loss/total (train NLL per reply
token), loss/eval, optim/lr, optim/grad_norm, tokens_per_s, batch/{examples,tokens,label_tokens,
rows,pad_frac}, time/{data,step,eval}, dist/{world_size,sequence_parallel}.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from longrl import checkpoint
from longrl.config import Config
from longrl.console import info, stop_requested
from longrl.data.sources import load_items
from longrl.config.model import OffloadConfig
from longrl.engine import ulysses
from longrl.engine.distributed import SINGLE, Dist, setup
from longrl.engine.nll import IGNORE, autocast, token_nll
from longrl.engine.offload import after_load, keep_optimizer_state_on_cpu
from longrl.engine.packed import packed_attention
from longrl.engine.seeds import seed_everything
from longrl.engine.sharding import clip_grad_norm, load_trainable, save_trained
from longrl.errors import ConfigError
from longrl.files import atomic_write_json
from longrl.models.loading import load_tokenizer
from longrl.sft.packing import (
    Example,
    PackedBatch,
    encode_examples,
    micro_batches,
    plan_steps,
    split_examples,
)
from longrl.trackers import Trackers
from longrl.tracking import MetricsLog, StepProgress, check_run_dir, holds_run_dir, prepare_run_dir


@dataclass(frozen=True)
class LoopSettings:
    """What `train_loop` needs beyond the model and the data (built from `sft` or `pretrain`)."""

    phase: str                 # label of every metrics line and checkpoint ("sft", "pretrain")
    steps: int                 # optimizer steps
    lr: float                  # peak learning rate
    min_lr_ratio: float        # decay floor, as a fraction of lr
    warmup_steps: int
    schedule: str              # constant | cosine | linear
    weight_decay: float
    grad_clip: float
    micro_batch_tokens: int    # padded tokens per forward/backward
    row_tokens: int            # packed row length
    logits_chunk_mb: float     # memory of one chunk of fp32 logits
    bf16_autocast: bool        # forward under torch.autocast(bfloat16); weights and optimizer stay in their dtype
    eval_every: int
    save_every: int
    keep_checkpoints: int
    log_every: int
    progress: str              # run.progress mode
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW moment decay rates
    offload: OffloadConfig | None = None       # CPU offload (the model is sharded with it; here: the optimizer state)
    attention: str = "auto"    # packed attention kernel (sft.attention): auto | flex | segments


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate at 0-based step `step`.

    Linear warmup over `warmup` steps from 1/(warmup+1), then constant, or cosine / linear decay
    from 1 to `min_ratio` over the remaining steps.
    Example: warmup 3 -> 0.25, 0.5, 0.75, then 1.0; cosine over 4 steps, min 0 -> 1, 0.854, 0.5, 0.146.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    decay = {"constant": 1.0, "cosine": 0.5 * (1 + math.cos(math.pi * progress)), "linear": 1.0 - progress}[schedule]
    return 1.0 if schedule == "constant" else min_ratio + (1 - min_ratio) * decay


def label_weights(batch: PackedBatch) -> torch.Tensor | None:
    """(N,) loss weights of a batch's labelled tokens in `token_nll`'s order; None when all are 1."""
    if batch.weights is None:
        return None
    return batch.weights[batch.labels != IGNORE]


def weight_total(batch: PackedBatch) -> float:
    """Sum of the loss weights of a batch's labels (its label count when unweighted)."""
    return float(batch.n_labels if batch.weights is None else label_weights(batch).sum())


@torch.no_grad()
def evaluate_loss(model, batches: list[PackedBatch], logits_chunk_mb: float = 256.0, bf16_autocast: bool = False,
                  dist: Dist = SINGLE) -> float:
    """Mean NLL per labelled token over `batches` (eval mode, no grad; split across ranks when launched)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    mine = dist.data_shard(batches)
    for k in range(dist.all_max(len(mine))):            # sharded ranks run the same number of forwards
        batch = mine[k] if k < len(mine) else batches[0]
        with autocast(model, bf16_autocast):
            nll = float(token_nll(model, batch, logits_chunk_mb).sum())
        if k < len(mine):
            total, count = total + nll, count + batch.n_labels
    model.train(was_training)
    total, count = dist.data_sum([total, count])
    return total / max(count, 1)


def train_loop(model, examples_at: Callable[[int], list[Example]], settings: LoopSettings, out: Path,
               eval_examples: list[Example] | None = None, pad_id: int = 0, trackers: Trackers | None = None,
               dist: Dist = SINGLE) -> dict:
    """Train `model` for `settings.steps` steps (resuming from `out/checkpoints`); returns the last metrics row.

    Args:
        model: causal LM to train in place (fp32 for exact resume on CPU).
        examples_at: 1-based step -> the examples of that step; must depend on the step only
            (it is called ahead, on a helper thread, while the previous step computes).
        settings: optimisation, batching and cadence.
        out: run directory (metrics.jsonl, checkpoints/).
        eval_examples: held-out examples for loss/eval (none = no eval loss).
        pad_id: token id written after the last segment of a row.
        trackers: experiment trackers fed from metrics.jsonl (`run.trackers`); None = none.
        dist: this process's rank (a model sharded by `engine.sharding.prepare` when launched).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, betas=settings.betas)
    keep_optimizer_state_on_cpu(optimizer, settings.offload)
    state = checkpoint.resume(out, model, optimizer)                          # {} on a fresh run
    after_load(optimizer, settings.offload)
    start = state.get("step", 0)
    metrics = MetricsLog(out / "metrics.jsonl", resume_step=state.get("step"), trackers=trackers, write=dist.is_main)
    eval_batches = micro_batches(eval_examples or [], settings.micro_batch_tokens, settings.row_tokens, pad_id)
    prepare = lambda step: micro_batches(dist.data_shard(examples_at(step)), settings.micro_batch_tokens,  # noqa: E731
                                         settings.row_tokens, pad_id)           # this replica's every N-th example
    row: dict = {}
    model.train()
    with packed_attention(model, settings.attention), ThreadPoolExecutor(1) as pool, \
            StepProgress(settings.steps, start, settings.progress, settings.phase, settings.log_every) as progress:
        pending = pool.submit(prepare, start + 1) if start < settings.steps else None
        for step in range(start + 1, settings.steps + 1):
            began = time.perf_counter()
            batches = pending.result()                                        # packed while the last step ran
            pending = pool.submit(prepare, step + 1) if step < settings.steps else None
            waited = time.perf_counter() - began
            lr = settings.lr * lr_factor(step - 1, settings.steps, settings.warmup_steps, settings.schedule,
                                         settings.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # forward/backward per micro-batch; token-level mean over the whole step's reply tokens (all ranks)
            n_labels, total_weight = dist.data_sum([sum(b.n_labels for b in batches),
                                                   sum(weight_total(b) for b in batches)])  # weight = labels unless weighted
            optimizer.zero_grad(set_to_none=True)
            nll = 0.0
            for k in range(dist.all_max(len(batches))):        # sharded ranks run the same number of backwards
                batch, scale = (batches[k], 1.0) if k < len(batches) else (filler(batches, examples_at(step), settings,
                                                                                    pad_id), 0.0)
                with autocast(model, settings.bf16_autocast):
                    losses = token_nll(model, batch, settings.logits_chunk_mb)                # (N,) float32
                w = label_weights(batch)
                ((losses if w is None else losses * w.to(losses.device)).sum() * scale / max(total_weight, 1e-12)).backward()
                nll += scale * float(losses.detach().sum())
            grad_norm = clip_grad_norm(params, settings.grad_clip)                          # global over shards
            optimizer.step()
            elapsed = time.perf_counter() - began
            nll, n_tokens, padded, n_examples, n_rows = dist.data_sum([
                nll, sum(b.n_tokens for b in batches), sum(b.input_ids.numel() for b in batches),
                sum(len(s) for b in batches for s in b.segments), sum(len(b.segments) for b in batches)])
            row = {"step": step, "phase": settings.phase, "loss/total": nll / n_labels, "optim/lr": lr,
                   "optim/grad_norm": grad_norm, "tokens_per_s": n_tokens / max(elapsed, 1e-9),
                   "batch/examples": int(n_examples), "batch/tokens": int(n_tokens), "batch/label_tokens": int(n_labels),
                   "batch/rows": int(n_rows), "batch/pad_frac": 1 - n_tokens / padded, "time/data": round(waited, 4),
                   "time/step": round(elapsed, 4), "dist/world_size": dist.world, "dist/sequence_parallel": dist.sp}
            if eval_batches and (step % settings.eval_every == 0 or step == settings.steps):
                t0 = time.perf_counter()
                row["loss/eval"] = evaluate_loss(model, eval_batches, settings.logits_chunk_mb, settings.bf16_autocast,
                                                 dist)
                row["time/eval"] = round(time.perf_counter() - t0, 4)
            metrics.log(row)
            # (SIGTERM during the step: checkpoint it now; progress.update then stops the run)
            if stop_requested() or step % settings.save_every == 0 or step == settings.steps:
                checkpoint.save(out, step, model, optimizer, None, {"phase": settings.phase},
                                keep=settings.keep_checkpoints)
            progress.update(step, row)
    metrics.close()
    return row


def filler(batches: list[PackedBatch], examples: list[Example], settings: LoopSettings, pad_id: int) -> PackedBatch:
    """A micro-batch to run with loss weight 0 (a rank with fewer micro-batches than another: FSDP's lockstep)."""
    return batches[0] if batches else micro_batches(examples[:1], settings.micro_batch_tokens, settings.row_tokens,
                                                    pad_id)[0]


def settings_from_sft(cfg, steps: int) -> LoopSettings:
    s = cfg.sft
    return LoopSettings(phase="sft", steps=steps, lr=s.lr, min_lr_ratio=s.min_lr_ratio, warmup_steps=s.warmup_steps,
                        schedule=s.schedule, weight_decay=s.weight_decay, grad_clip=s.grad_clip,
                        micro_batch_tokens=s.micro_batch_tokens or s.batch_tokens, row_tokens=s.row_tokens,
                        logits_chunk_mb=s.logits_chunk_mb, bf16_autocast=s.bf16_autocast, eval_every=s.eval_every,
                        attention=s.attention,
                        save_every=cfg.run.save_every,
                        keep_checkpoints=cfg.run.keep_checkpoints, log_every=cfg.run.log_every, progress=cfg.run.progress,
                        offload=s.offload)


def is_finished(out: Path, steps: int) -> bool:
    """`final/` is written and the newest checkpoint is the last step."""
    found = checkpoint.list_checkpoints(out)
    return (out / "final").is_dir() and bool(found) and found[-1][0] >= steps


@holds_run_dir
def train_sft(cfg: Config, out: str | Path, examples=None) -> Path:
    """Warm-up SFT as `cfg` says, or resume it from `out`; returns the final model folder `out/final`.

    Args:
        cfg: the whole Config (model, sft, run; data.skip_bad).
        out: run directory (config.yaml, data.json, metrics.jsonl, checkpoints/, final/).
        examples: demonstrations as Samples with meta.trace; None = load `cfg.sft.data`.
    Returns:
        `out/final`, a folder that `load_policy(ModelConfig(path=...))` loads.
    """
    out = check_run_dir(out, cfg)                                             # refuses a different config; writes nothing
    seed_everything(cfg.run)
    dist, device = setup(cfg.run.device)                                      # torchrun: this rank's place and device
    dist = ulysses.init(dist, cfg.sft.sequence_parallel, "sft.sequence_parallel", cfg.model,
                        {"model.lora": cfg.model.lora is not None})
    tokenizer = load_tokenizer(cfg.model)
    if examples is None:
        if not cfg.sft.data:
            raise ConfigError("sft.data is empty: name the demonstrations to train on (e.g. the output of `longrl distill`)")
        examples = load_items(cfg.sft.data, tokenizer, cfg.data.skip_bad)
    encoded, dropped = encode_examples(tokenizer, list(examples), cfg.sft.max_seq_tokens)
    train, held = split_examples(encoded, cfg.sft.eval_fraction, cfg.run.seed)
    plan = plan_steps([e.n_tokens for e in train], cfg.sft.batch_tokens, cfg.run.seed, cfg.sft.epochs, cfg.sft.steps)
    summary = {"examples": len(encoded) + dropped, "dropped_too_long": dropped, "train_examples": len(train),
               "eval_examples": len(held), "steps": len(plan), "train_tokens": sum(e.n_tokens for e in train),
               "train_label_tokens": sum(e.n_labels for e in train)}
    if is_finished(out, len(plan)):
        return out / "final"
    model = load_trainable(cfg.model, dist, device, cfg.sft.offload, "sft.offload")  # fp32 masters; sharded or autocast
    prepare_run_dir(out, cfg)                                                 # the run starts: config.yaml, log.txt
    if dist.is_main:
        atomic_write_json(out / "data.json", summary)
    info(f"sft: {summary['train_examples']} training examples ({summary['train_tokens']:,} tokens), "
         f"{len(held)} held out, {dropped} dropped over sft.max_seq_tokens; {len(plan)} steps")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train_loop(model, lambda step: [train[i] for i in plan[step - 1]], settings_from_sft(cfg, len(plan)), out,
               held, pad_id, Trackers.from_config(cfg, out) if dist.is_main else None, dist)
    return save_trained(out / "final", model, tokenizer, cfg.model, dist)
