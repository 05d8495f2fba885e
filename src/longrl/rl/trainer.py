"""The RL loop: GRPO / DAPO on long-context prompts, one readable function (`train`).

    longrl rl --config configs/smoke.yaml --out runs/smoke                 # tiny model, CPU, < 1 min
    longrl rl --config configs/smoke.yaml --out runs/smoke algo.advantage=drgrpo train.steps=8
    python -c "from longrl.rl.trainer import train; from longrl.config import load_config; train(load_config('configs/smoke.yaml'), 'runs/x')"

Each step (rollout and reward: `rl/rollout.py`; the update: `rl/update.py`):
  1. Rollout. Draw prompts (`rl/sampler.py`: seeded epochs, resumable cursor), render them with the
     method's template (documents middle-truncated to `rollout.max_input_tokens`), sample G
     completions per prompt with the shared-prefix generator (`engine/generate.py`: the prompt's KV is
     kept once per group), or, with `rollout.backend: server`, from an OpenAI-compatible server
     (SGLang, vLLM, `longrl serve`: `engine/remote.py`) that reloads the policy the trainer writes
     after every update and must report its version before the next rollout. Each group's randomness
     comes from (run seed, step, draw index), so a resumed or re-batched run samples the same tokens.
  2. Reward. The hybrid reward (`rewards/hybrid.py`): rule verification, the LLM judge when the rule
     says 0 (if configured), DAPO overlong shaping (if enabled).
  3. Dynamic sampling (`rl/dynamic.py`, DAPO): groups whose `algo.filter_metric` is the same for all G
     samples are dropped (accuracy, the default: all right or all wrong, 0 < #correct < G is kept,
     whatever overlong shaping did to the rewards; reward: the shaped rewards all equal) and more
     prompts are drawn, at most `algo.max_refills` extra rounds; then the step trains on what it
     has. No informative group at all: the update is skipped and logged (`update/skipped`).
  4. Advantages (`algos.ADVANTAGES`): GRPO (r - mean) / (std + eps) per group, or Dr. GRPO r - mean
     (pair it with `algo.loss_agg: seq-mean-token-sum-norm`, Dr. GRPO's constant normaliser).
  5. Update: `train.ppo_epochs` passes; each splits the groups into `train.mini_batches` shuffled
     mini-batches (one AdamW step each, global grad-norm clip); each mini-batch runs as token-budget
     micro-batches (`rl/batching.py`) with gradient accumulation. Log-probs come from the
     shared-prompt training forward with a chunked LM head (`engine/logprobs.py`). Per-token loss =
     clipped PPO term (clip-higher) + kl_coef * KL(policy || ref) + entropy bonus, aggregated as
     `algo.loss_agg` with the normaliser of the whole mini-batch, so micro-batching is exact.
  6. Validation (`rl/validation.py`, when `train.eval_every` > 0 and `data.eval` is set): the held-out
     items are sampled with `rollout.validation` and scored with the evaluation reward before the first
     step (a step-0 line in metrics.jsonl) and every `eval_every` steps and at the last.
  7. Metrics (one `metrics.jsonl` line per step), item scores (`item_scores.jsonl`: the G rewards and
     G correctness flags of every item rolled out, read by the curriculum's difficulty store), sample dumps (`samples/`),
     checkpoint (`checkpoints/step-N/`, every `run.save_every` steps and at the last one).

Metrics (metrics.jsonl, one line per step; reward, length and accuracy figures cover every response
generated in the step, refills included; loss figures cover the trained tokens):
  reward/* (hybrid reward summary: mean, std, rule, judge, overlong, ...), accuracy (share of
  responses the rule or the judge marks correct, before shaping), entropy and kl (token means of the
  policy's entropy and of the KL estimate to the reference, when one is loaded), response_len/{mean,max,min},
  truncated_frac, filtered_groups_frac (generated groups not trained on), rollout/* (refills, groups,
  uniform_groups_frac, fill_frac, tokens, prompt_len_{mean,max,min}), advantage/{mean,max,min} (over the
  trained tokens), loss/{policy,total,clip_frac,clip_frac_low,clip_frac_high}, optim/{lr,grad_norm,updates},
  update/{skipped,tokens}, tokens_per_s (prompt + completion tokens rolled out / step wall time),
  time/{rollout,reward,update,sync,step,step_cpu} (sync: handing the weights to the rollout backend;
  ~0 in process, write + reload + version check for a server; step 1's includes the first hand-over),
  weights/{sync_s,sync_bytes} (a server backend: the hand-overs' time and bytes written, in the served dtype),
  dist/world_size (ranks), dist/sequence_parallel (ranks per sequence), memory/peak_gb (CUDA: this rank's peak);
  on validation steps val/accuracy,
  val/<task>/accuracy, val/response_len/mean, val/items and time/val.

Departures from the papers, and choices they left open:
  - Training log-probs (current, old, reference), the entropy and the KL are of softmax(logits / T),
    T = `rollout.temperature` (the phase's; greedy T = 0 trains at T = 1), as verl and the official
    script do; top-p is not applied in training (the sampler's log-probs equal the trainer's at top_p 1).
  - Old log-probs (the PPO ratio's denominator) come from the current policy before the step's
    updates, recomputed by a no-grad forward, not from the sampler: sampling log-probs differ
    from the policy's by top-p (and by the engine's numerics). When the step makes a single optimizer update the
    forward is skipped: the policy is still the one that would be recomputed, so the current
    log-probs, detached, are the same numbers (ratio exactly 1 at the first update).
  - Dynamic sampling never fails for lack of informative groups (the original raises after
    generating "too many" batches); surplus informative groups of the last round are not trained on.
  - The learning rate is a pure function of the RL step (warmup counts steps, not optimizer updates).
  - The reference model for KL is the starting policy (`model.path`), loaded only when
    `algo.kl_coef > 0` or `algo.track_kl`; the paper uses kl_coef 0. With LoRA (`model.lora`) only the
    adapters train and the reference is the policy with its adapters switched off (no second copy).

Resume: rerunning the same command on the same `--out` continues from the newest checkpoint (model,
optimizer, RNG states, data cursor); metrics.jsonl and item_scores.jsonl are cut back
to the checkpoint, so each step appears once. A run whose `final/` exists and whose last checkpoint
is the last step returns at once. On CPU in fp32, a run killed at any point and resumed ends with
the same weights as an uninterrupted one (`tests/rl/test_trainer.py`).

Scale-out: `torchrun --nproc_per_node N -m longrl.cli rl ...` runs this loop on N ranks. The policy
(and reference) are sharded with FSDP2 (`engine/sharding.py`), each rank rolls out whole groups and
all ranks then hold the step's groups (`rl/groups.py`), each trains on its whole groups of every
mini-batch with the mini-batch's normaliser, and rank 0 alone writes; checkpoints are sharded.
With `rollout.backend: server` each rank sends its own groups' requests; every rank gathers the
weights for a hand-over, rank 0 writes them and has the server reload them (`engine/remote.py`). A
2-rank run ends with the weights of a 1-rank run (`tests/rl/test_trainer_distributed.py`). With
`train.sequence_parallel: N` (Ulysses, `engine/ulysses.py`) the ranks form world / N data replicas of N
consecutive ranks; the N ranks of a replica train on the same groups, each running 1/N of every
sequence's positions (old and reference log-probs too). The rollout is unchanged: every rank still
rolls out (or, with a server, requests) its own whole groups, so no group is sampled twice, and the
hand-over gathers the weights FSDP2 shards over all the ranks.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from longrl import checkpoint
from longrl.config import Config
from longrl.console import stop_requested
from longrl.data.schema import Sample
from longrl.data.sources import load_items
from longrl.engine.distributed import SINGLE, Dist, peak_memory, reset_peak_memory, setup
from longrl.engine.offload import after_load, keep_optimizer_state_on_cpu
from longrl.engine.seeds import seed_everything
from longrl.engine import ulysses
from longrl.engine.sharding import load_device, load_trainable, prepare, save_trained
from longrl.models.loading import compute_dtype, load_policy, load_tokenizer
from longrl.models.lora import has_adapters
from longrl.rl import algos
from longrl.rl.dynamic import collect_groups
from longrl.rl.groups import check_split, roll_across_ranks
from longrl.rl.rollout import Roller, item_score_rows, rollout_metrics, sample_rows
from longrl.rl.sampler import PromptSampler
from longrl.rl.sizes import check_sizes
from longrl.rl.update import objective, policy_update, rewards_tensor, skipped_update
from longrl.rl.validation import is_validation_step, validate, validation_metrics
from longrl.trackers import Trackers
from longrl.tracking import (
    MetricsLog,
    StepProgress,
    Timers,
    check_run_dir,
    dump_samples,
    holds_run_dir,
    prepare_run_dir,
)

# `algo.filter_metric` -> what must vary within a group for DAPO's dynamic sampling to keep it.
FILTER_SIGNALS = {"accuracy": lambda g: g.correct, "reward": lambda g: g.rewards}


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base learning rate for 0-based RL step `step`.

    Linear warmup over `warmup` steps from 1/(warmup+1), then constant, cosine to 0 or linear to 0
    over the remaining steps. Example: warmup 3 -> 0.25, 0.5, 0.75, then 1.0 (constant).
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    span = max(total - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return {"constant": 1.0, "cosine": 0.5 * (1 + math.cos(math.pi * progress)), "linear": 1.0 - progress}[schedule]


def make_optimizer(cfg: Config, policy: torch.nn.Module) -> torch.optim.AdamW:
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps,
                                  weight_decay=cfg.optim.weight_decay)
    keep_optimizer_state_on_cpu(optimizer, cfg.train.offload)          # train.offload.optimizer alone: hooks
    return optimizer


def set_learning_rate(optimizer: torch.optim.Optimizer, cfg: Config, step: int) -> float:
    """Set the learning rate of 1-based RL step `step` (a pure function of the step: nothing to checkpoint)."""
    lr = cfg.optim.lr * lr_factor(step - 1, cfg.train.steps, cfg.optim.warmup_steps, cfg.optim.schedule)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def load_reference(cfg: Config, device: torch.device, policy, dist: Dist = SINGLE):
    """The frozen starting policy (computed exactly as the policy is), or None when no KL is computed.
    With LoRA the reference is the policy itself, run with its adapters switched off
    (`reference_logprobs`): no second copy."""
    if cfg.algo.kl_coef == 0 and not cfg.algo.track_kl:
        return None
    if has_adapters(policy):
        return policy
    ref = load_policy(cfg.model, load_device(dist, device), dtype="float32").eval()
    ref.requires_grad_(False)
    return prepare(ref, dist, compute_dtype(cfg.model), trainable=False, offload=cfg.train.offload)


def is_finished(out: Path, cfg: Config) -> bool:
    """`final/` is written and the newest checkpoint is the last step."""
    found = checkpoint.list_checkpoints(out)
    return (out / "final").is_dir() and bool(found) and found[-1][0] >= cfg.train.steps


@holds_run_dir
def train(cfg: Config, out: str | Path, items: list[Sample] | None = None, phase: str = "rl") -> Path:
    """Run RL as `cfg` says, or resume it from `out`; returns the final policy folder `out/final`.

    Args:
        cfg: the whole config (model, data, reward, rollout, algo, optim, train, run).
        out: run directory (config.yaml, metrics.jsonl, item_scores.jsonl, samples/, checkpoints/, final/).
        items: training items; None = load `cfg.data.train`.
        phase: label written to every metrics line, item score and checkpoint (curriculum phases).
    """
    out = check_run_dir(out, cfg)                                           # refuses a different config; writes nothing
    if is_finished(out, cfg):
        return out / "final"
    seed_everything(cfg.run)
    dist, device = setup(cfg.run.device)                                    # torchrun: this rank's place and device
    dist = ulysses.init(dist, cfg.train.sequence_parallel, "train.sequence_parallel", cfg.model,
                        {"model.lora": cfg.model.lora is not None})
    check_split(cfg.train.prompts_per_step, cfg.train.mini_batches, dist.data_world)
    tokenizer = load_tokenizer(cfg.model)
    policy = load_trainable(cfg.model, dist, device, cfg.train.offload)     # fp32 masters; sharded or autocast
    check_sizes(cfg, policy.config, device, dist.world)                     # the model's context, this machine's memory
    ref = load_reference(cfg, device, policy, dist)                         # None unless KL is used
    items = items if items is not None else load_items(cfg.data.train, tokenizer, cfg.data.skip_bad)
    held_out = load_items(cfg.data.eval, tokenizer, cfg.data.skip_bad) if cfg.train.eval_every else []
    prepare_run_dir(out, cfg)                                               # the run starts: config.yaml, log.txt
    optimizer = make_optimizer(cfg, policy)
    state = checkpoint.resume(out, policy, optimizer)                       # {} on a fresh run
    after_load(optimizer, cfg.train.offload)
    start = state.get("step", 0)
    trackers = Trackers.from_config(cfg, out) if dist.is_main else None
    metrics = MetricsLog(out / "metrics.jsonl", resume_step=state.get("step"), trackers=trackers, write=dist.is_main)
    item_scores = MetricsLog(out / "item_scores.jsonl", resume_step=state.get("step"), write=dist.is_main)
    sampler = PromptSampler(items, cfg.run.seed, cursor=state.get("cursor", 0))
    timers = Timers()
    roller = Roller(cfg, policy, tokenizer, timers, out, dist)
    roller.sync(f"step-{start}")                                           # a rollout server gets the policy first
    advantage_fn = algos.ADVANTAGES.get(cfg.algo.advantage)                 # names resolved once, up front
    obj = objective(cfg)
    progress = StepProgress(cfg.train.steps, start, cfg.run.progress, phase, cfg.run.log_every)

    def validation(step: int) -> dict[str, float]:
        """val/* of `data.eval` when `step` is a validation step, else {}."""
        if not held_out or not is_validation_step(step, cfg.train.steps, cfg.train.eval_every, cfg.train.eval_before_train):
            return {}
        with timers.time("val"):
            return validation_metrics(validate(roller, held_out, cfg, step, dist))

    if start == 0 and (before := validation(0)):                            # before training: step 0
        metrics.log({"step": 0, "phase": phase, **before, **timers.pop()})
    with progress:
        for step in range(start + 1, cfg.train.steps + 1):
            began, began_cpu = time.perf_counter(), time.process_time()
            reset_peak_memory(device)
            lr = set_learning_rate(optimizer, cfg, step)
            # 1-3) rollout -> reward, refilled until the step has its informative groups (DAPO dynamic sampling)
            collected = collect_groups(lambda n: roll_across_ranks(roller.roll, step, sampler.next(n), dist),
                                       FILTER_SIGNALS[cfg.algo.filter_metric], cfg.train.prompts_per_step,
                                       cfg.algo.max_refills, cfg.algo.dynamic_sampling, cfg.algo.gen_prompts)
            # 4) advantages, 5) policy update (skipped, and logged, when no group is informative)
            with timers.time("update"):
                adv = advantage_fn(rewards_tensor(collected.groups, cfg.rollout.group_size), eps=cfg.algo.adv_eps)
                update = (policy_update(policy, ref, optimizer, collected.groups, adv, cfg, obj, step, dist)
                          if collected.groups else skipped_update(ref is not None))
            roller.sync(f"step-{step}")                                     # the next rollout samples the new policy
            elapsed, elapsed_cpu = time.perf_counter() - began, time.process_time() - began_cpu
            # 6) validation: held-out accuracy of the updated policy (its time is time/val, not time/step)
            val = validation(step)
            # 7) metrics, item scores, sample dumps, checkpoint
            stats = rollout_metrics(collected.all)
            row = {"step": step, "phase": phase, **stats, **collected.metrics(), **update, **val, "optim/lr": lr,
                   **algos.advantage_metrics(adv, [[len(c) for c in g.completions] for g in collected.groups]),
                   "tokens_per_s": stats["rollout/tokens"] / max(elapsed, 1e-9), **timers.pop(), **roller.handover_metrics(),
                   "time/step": round(elapsed, 4), "time/step_cpu": round(elapsed_cpu, 4),
                   "dist/world_size": dist.world, "dist/sequence_parallel": dist.sp, **peak_memory(device)}
            for score_row in item_score_rows(step, phase, collected.all):
                item_scores.log(score_row)
            metrics.log(row)
            if dist.is_main and cfg.run.dump_samples_every and step % cfg.run.dump_samples_every == 0:
                dump_samples(out, step, sample_rows(step, collected.all))
            # (SIGTERM during the step: checkpoint it now; progress.update then stops the run)
            if stop_requested() or step % cfg.run.save_every == 0 or step == cfg.train.steps:
                checkpoint.save(out, step, policy, optimizer, None, {"cursor": sampler.cursor, "phase": phase},
                                keep=cfg.run.keep_checkpoints)
            progress.update(step, row)
    metrics.close()
    item_scores.close()
    return save_trained(out / "final", policy, tokenizer, cfg.model, dist)
