"""The RL loop: GRPO / DAPO on long-context prompts, one readable function (`train`).

    longrl rl --config configs/smoke.yaml --out runs/smoke                 # tiny model, CPU, < 1 min
    longrl rl --config configs/smoke.yaml --out runs/smoke algo.advantage=drgrpo train.steps=8
    python -c "from longrl.rl.trainer import train; from longrl.config import load_config; train(load_config('configs/smoke.yaml'), 'runs/x')"

Each step:
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
  6. Metrics (one `metrics.jsonl` line per step), item scores (`item_scores.jsonl`: the G rewards and
     G correctness flags of every item rolled out, read by the curriculum's difficulty store), sample dumps (`samples/`),
     checkpoint (`checkpoints/step-N/`, every `run.save_every` steps and at the last one).

Metrics (metrics.jsonl, one line per step; reward, length and accuracy figures cover every response
generated in the step, refills included; loss figures cover the trained tokens):
  reward/* (hybrid reward summary: mean, std, rule, judge, overlong, ...), accuracy (share of
  responses the rule or the judge marks correct, before shaping), entropy and kl (token means of the
  policy's entropy and of the KL estimate to the reference, when one is loaded), response_len/{mean,max},
  truncated_frac, filtered_groups_frac (generated groups not trained on), rollout/* (refills, groups,
  uniform_groups_frac, fill_frac, tokens), loss/{policy,total,clip_frac}, optim/{lr,grad_norm,updates},
  update/{skipped,tokens}, tokens_per_s (prompt + completion tokens rolled out / step wall time),
  time/{rollout,reward,update,sync,step,step_cpu} (sync: handing the weights to the rollout backend;
  ~0 in process, write + reload + version check for a server; step 1's includes the first hand-over),
  dist/world_size (ranks), memory/peak_gb (CUDA: this rank's peak).

Departures from the papers, and choices they left open:
  - Old log-probs (the PPO ratio's denominator) come from the current policy before the step's
    updates, recomputed by a no-grad forward, not from the sampler: sampling log-probs differ
    from the policy's by temperature and top-p. When the step makes a single optimizer update the
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
mini-batch with the mini-batch's normaliser, and rank 0 alone writes; checkpoints are sharded. A
2-rank run ends with the weights of a 1-rank run (`tests/rl/test_trainer_distributed.py`).
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longrl import checkpoint
from longrl.config import Config
from longrl.data.prompt import encode_prompt
from longrl.data.schema import Sample
from longrl.data.sources import load_items
from longrl.engine.distributed import SINGLE, Dist, peak_memory, reset_peak_memory, setup
from longrl.engine.generate import (
    Generator,
    SamplingParams,
    SharedPrefixGenerator,
    group_seed,
    stop_token_ids,
)
from longrl.engine.logprobs import completion_stats
from longrl.engine.remote import RemoteGenerator
from longrl.engine.sharding import load_device, load_trainable, prepare, rollout_weights, save_trained
from longrl.errors import ConfigError
from longrl.models.loading import compute_dtype, load_policy, load_tokenizer
from longrl.models.lora import adapters_disabled, has_adapters
from longrl.rewards.hybrid import HybridReward, RewardInput, summarize
from longrl.rl import algos
from longrl.rl.batching import (
    completion_mask,
    gather,
    lockstep,
    pad_rows,
    plan_groups,
    split_mini_batches,
)
from longrl.rl.dynamic import collect_groups
from longrl.rl.groups import Group, check_split, is_correct, roll_across_ranks
from longrl.rl.sampler import Draw, PromptSampler
from longrl.trackers import Trackers
from longrl.tracking import (
    MetricsLog,
    StepProgress,
    Timers,
    check_run_dir,
    dump_samples,
    prepare_run_dir,
)


@dataclass
class Objective:
    """The step's loss ingredients, resolved from config names once."""

    agg: algos.LossAgg
    kl: algos.KLEstimator
    clip_low: float
    clip_high: float
    kl_coef: float
    entropy_coef: float


# `algo.filter_metric` -> what must vary within a group for DAPO's dynamic sampling to keep it.
FILTER_SIGNALS = {"accuracy": lambda g: g.correct, "reward": lambda g: g.rewards}


def seed_everything(cfg: Config) -> None:
    if cfg.run.torch_threads:
        torch.set_num_threads(cfg.run.torch_threads)
    random.seed(cfg.run.seed)
    np.random.seed(cfg.run.seed % 2**32)
    torch.manual_seed(cfg.run.seed)


def stream_seed(*keys: Any) -> int:
    """A 63-bit seed fixed by `keys` (stable across processes, unlike hash())."""
    return random.Random(":".join(map(str, keys))).getrandbits(63)


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
    return torch.optim.AdamW(params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps,
                             weight_decay=cfg.optim.weight_decay)


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
    return prepare(ref, dist, compute_dtype(cfg.model), trainable=False)


def make_generator(cfg: Config, policy, tokenizer, out: Path | None) -> Generator:
    """The rollout backend `rollout.backend` names: the in-process shared-prefix generator, or a model
    server (`engine/remote.py`) loading the weights the trainer writes to `rollout.server.weights_dir`
    (default `out/served`; without a run directory, a folder under the system's temporary directory)."""
    r = cfg.rollout
    if r.backend == "server":
        weights_dir = Path(out) / "served" if out is not None else Path(tempfile.gettempdir()) / "longrl-served"
        return RemoteGenerator(r.server, weights_dir)
    try:
        return SharedPrefixGenerator(policy, tokenizer.pad_token_id, groups_per_batch=r.groups_per_batch,
                                     device=next(policy.parameters()).device, decode=r.decode)
    except ValueError as exc:
        raise ConfigError(f"rollout.decode: {exc}") from None


class Roller:
    """Rollout + reward for batches of draws: `roll(step, draws) -> list[Group]`.

    `sync(version)` hands the policy's current weights to the rollout backend (a server writes,
    reloads and checks them; the in-process generator samples the live policy: nothing to do). The
    first roll() syncs when nothing has been yet.
    """

    def __init__(self, cfg: Config, policy, tokenizer, timers: Timers, out: Path | None = None):
        self.cfg, self.policy, self.tokenizer, self.timers = cfg, policy, tokenizer, timers
        self.stops = stop_token_ids(tokenizer, policy)                # the same rule evaluation uses
        r = cfg.rollout
        self.params = SamplingParams(max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p,
                                     top_k=r.top_k, stop_token_ids=self.stops)
        self.generator = make_generator(cfg, policy, tokenizer, out)
        self.reward = HybridReward(cfg.reward)
        self.synced = False

    def sync(self, version: str) -> None:
        with self.timers.time("sync"):
            self.generator.sync_weights(self.policy, version)
        self.synced = True

    def encode(self, item: Sample) -> list[int]:
        try:
            return encode_prompt(self.tokenizer, item, self.cfg.rollout.max_input_tokens).ids
        except ValueError as exc:
            raise ConfigError(f"rollout.max_input_tokens: {exc}") from None

    def roll(self, step: int, draws: list[Draw]) -> list[Group]:
        G = self.cfg.rollout.group_size
        if not self.synced:
            self.sync(f"rollout-{step}")
        in_process = isinstance(self.generator, SharedPrefixGenerator)
        with self.timers.time("rollout"), torch.no_grad(), rollout_weights(self.policy) as model:
            self.policy.eval()
            if in_process:
                self.generator.model = model             # the policy, or its twin holding gathered weights
            try:
                prompts = [self.encode(d.item) for d in draws]
                seeds = [group_seed(self.cfg.run.seed, step, d.index) for d in draws]
                outs = self.generator.generate(prompts, G, self.params, seeds) if draws else []
            finally:
                if in_process:
                    self.generator.model = self.policy
        with self.timers.time("reward"):
            texts = [[self.decode(c) for c in out.completions] for out in outs]
            inputs = [RewardInput(task=d.item.task, question=d.item.question, answers=list(d.item.answers), response=t,
                                  response_tokens=len(c), max_response_tokens=self.params.max_new_tokens,
                                  context=d.item.context)
                      for d, out, ts in zip(draws, outs, texts) for t, c in zip(ts, out.completions)]
            results = self.reward.score(inputs)
        groups = []
        for k, (d, out, ts) in enumerate(zip(draws, outs, texts)):
            res = results[k * G:(k + 1) * G]
            groups.append(Group(d, list(out.prompt_ids), [list(c) for c in out.completions], list(out.truncated), ts,
                                res, [r.score for r in res]))
        return groups

    def decode(self, ids: list[int]) -> str:
        if ids and ids[-1] in self.stops:
            ids = ids[:-1]
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def no_grad_logprobs(model, groups: list[Group], cfg: Config, shares: list[list[int]] | None = None,
                     dist: Dist = SINGLE) -> dict[tuple[int, int], torch.Tensor]:
    """Per-sequence log-probs of the completions of this rank's groups (`shares[rank]`; default all), without grad."""
    prompts = [g.prompt_ids for g in groups]
    comps = [g.completions for g in groups]
    lens = [[len(c) for c in cs] for cs in comps]
    shares = shares or [list(range(len(groups)))]
    plans = [plan_groups(share, [len(p) for p in prompts], lens, cfg.train.micro_batch_tokens,
                         cfg.train.shared_prompt_forward) for share in shares]
    out: dict[tuple[int, int], torch.Tensor] = {}
    with torch.no_grad():
        for micro, weight in lockstep(plans, dist.rank if len(shares) > 1 else 0, spare_group=0):
            p, c = gather(micro, prompts, comps)
            stats = completion_stats(model, p, c, cfg.train.logprob_chunk_tokens, with_entropy=False,
                                     shared_prompt=cfg.train.shared_prompt_forward)
            for b, (g, r) in enumerate(micro.sequences if weight else []):
                out[(g, r)] = stats.logprobs[b, : len(comps[g][r])].detach()
    return out


def reference_logprobs(ref, groups: list[Group], cfg: Config, shares: list[list[int]] | None = None,
                       dist: Dist = SINGLE) -> dict[tuple[int, int], torch.Tensor]:
    """Log-probs under the reference: the frozen starting model, or the LoRA policy with its adapters off."""
    with adapters_disabled(ref):                 # a no-op for a model without adapters
        return no_grad_logprobs(ref, groups, cfg, shares, dist)


def policy_update(policy, ref, optimizer, groups: list[Group], adv: torch.Tensor, cfg: Config, obj: Objective,
                  step: int, dist: Dist = SINGLE) -> dict[str, float]:
    """`ppo_epochs` x mini-batches of micro-batches; one AdamW step per mini-batch.

    Under torchrun every rank holds all groups; each trains on its whole groups of each mini-batch
    (`dist.shard`), with the mini-batch's global normaliser, and the sharded gradients are summed.

    Args:
        groups: the P groups to train on.
        adv: (P, G) advantages.

    Returns:
        loss/*, optim/grad_norm, entropy, kl (when a reference is loaded), update counts (all ranks summed).
    """
    t = cfg.train
    prompts = [g.prompt_ids for g in groups]
    comps = [g.completions for g in groups]
    lens = [[len(c) for c in cs] for cs in comps]
    minis = [split_mini_batches(len(groups), t.mini_batches,
                                torch.Generator().manual_seed(stream_seed(cfg.run.seed, "minibatch", step, epoch)))
             for epoch in range(t.ppo_epochs)]
    shares = [sorted({g for epoch in minis for mini in epoch for g in mini[r::dist.world]}) for r in range(dist.world)]
    updates = sum(len(epoch) for epoch in minis)
    old = no_grad_logprobs(policy, groups, cfg, shares, dist) if updates > 1 else None
    ref_lp = reference_logprobs(ref, groups, cfg, shares, dist) if ref is not None else None
    params = [p for group in optimizer.param_groups for p in group["params"]]   # (FSDP's root may show gathered copies)
    sums = {"loss/policy": 0.0, "loss/total": 0.0, "loss/clip_frac": 0.0, "entropy": 0.0, "kl": 0.0}
    tokens, norms = 0.0, []
    policy.train()
    for epoch in minis:
        for mini in epoch:
            normaliser = max(obj.agg.count(completion_mask([n for g in mini for n in lens[g]]),
                                           cfg.rollout.max_new_tokens), 1.0)           # the whole mini-batch's
            plans = [plan_groups(mini[r::dist.world], [len(p) for p in prompts], lens, t.micro_batch_tokens,
                                 t.shared_prompt_forward) for r in range(dist.world)]
            optimizer.zero_grad(set_to_none=True)
            for micro, weight in lockstep(plans, dist.rank, spare_group=mini[0]):
                seqs = micro.sequences                                   # step-level (group, row)
                p, c = gather(micro, prompts, comps)
                stats = completion_stats(policy, p, c, t.logprob_chunk_tokens, with_entropy=True,
                                         shared_prompt=t.shared_prompt_forward)
                mask = stats.mask.to(stats.logprobs.dtype)                                   # (B, T)
                width = mask.shape[1]
                fresh = old is None or not weight                       # one update, or a lockstep filler
                old_lp = stats.logprobs.detach() if fresh else pad_rows([old[s] for s in seqs], width)
                a = torch.stack([adv[g, r] for g, r in seqs]).to(stats.logprobs)            # (B,)
                pg, clip_frac = algos.ppo_clip_loss(stats.logprobs, old_lp, a, mask, obj.clip_low, obj.clip_high)
                per_token = pg + algos.entropy_bonus(stats.entropy, obj.entropy_coef)      # (B, T)
                if ref_lp is not None:
                    ref_rows = [ref_lp[s] for s in seqs] if weight else [stats.logprobs[0].detach()]
                    kl = obj.kl(stats.logprobs, pad_rows(ref_rows, width))
                    per_token = per_token + obj.kl_coef * kl
                    sums["kl"] += weight * float((kl.detach() * mask).sum())
                loss = obj.agg.reduce(per_token, mask) / normaliser * weight   # weight 0: a lockstep filler
                loss.backward()
                if not weight:
                    continue
                n = float(mask.sum())
                tokens += n
                sums["loss/total"] += float(loss.detach())      # micro-batch parts add up to the mini-batch loss
                sums["loss/policy"] += float((pg.detach() * mask).sum())
                sums["loss/clip_frac"] += float(clip_frac) * n
                sums["entropy"] += float((stats.entropy.detach() * mask).sum())
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)      # global over shards
            norms.append(float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm))
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)          # no gradients held through the next rollout
    keys = list(sums)
    totals = dist.all_sum([sums[k] for k in keys] + [tokens])
    sums, tokens = dict(zip(keys, totals[:-1])), totals[-1]
    out = {k: v / max(tokens, 1.0) for k, v in sums.items() if k != "loss/total"}
    out["loss/total"] = sums["loss/total"] / max(len(norms), 1)    # mean over updates of the aggregated loss
    if ref_lp is None:
        out.pop("kl")
    out.update({"optim/grad_norm": sum(norms) / max(len(norms), 1), "optim/updates": float(len(norms)),
                "update/skipped": 0.0, "update/tokens": tokens})
    return out


def skipped_update(tracks_kl: bool) -> dict[str, float]:
    """Metrics of a step with no informative group: nothing to train on (NaN -> null in metrics.jsonl)."""
    nan = float("nan")
    out = {"loss/policy": nan, "loss/total": nan, "loss/clip_frac": nan, "entropy": nan, "optim/grad_norm": nan,
           "optim/updates": 0.0, "update/skipped": 1.0, "update/tokens": 0.0}
    if tracks_kl:
        out["kl"] = nan
    return out


def objective(cfg: Config) -> Objective:
    a = cfg.algo
    return Objective(agg=algos.LOSS_AGG.get(a.loss_agg), kl=algos.KL_ESTIMATORS.get(a.kl_estimator),
                     clip_low=a.clip_eps_low, clip_high=a.clip_eps_high, kl_coef=a.kl_coef, entropy_coef=a.entropy_coef)


def rewards_tensor(groups: list[Group], group_size: int) -> torch.Tensor:
    """(P, G) final scores of the groups (P may be 0)."""
    return torch.tensor([g.rewards for g in groups], dtype=torch.float32, device="cpu").reshape(len(groups), group_size)


def rollout_metrics(groups: list[Group]) -> dict[str, float]:
    """Reward, accuracy and length statistics over every response generated in the step."""
    results = [r for g in groups for r in g.results]
    lengths = [len(c) for g in groups for c in g.completions]
    truncated = [t for g in groups for t in g.truncated]
    correct = [is_correct(r) for r in results]
    n = max(len(lengths), 1)
    return {
        **summarize(results),
        "accuracy": sum(correct) / n,                     # rule-or-judge says correct, before shaping
        "response_len/mean": sum(lengths) / n,
        "response_len/max": float(max(lengths, default=0)),
        "truncated_frac": sum(truncated) / n,
        "rollout/prompt_len_mean": sum(len(g.prompt_ids) for g in groups) / max(len(groups), 1),
        "rollout/tokens": float(sum(len(g.prompt_ids) + sum(len(c) for c in g.completions) for g in groups)),
    }


def item_score_rows(step: int, phase: str, groups: list[Group]) -> list[dict[str, Any]]:
    """One row per item rolled out: its G rewards (shaped) and G correctness flags (read by the curriculum)."""
    return [{"step": step, "phase": phase, "id": g.draw.item.id, "rewards": g.rewards, "correct": g.correct}
            for g in groups]


def sample_rows(step: int, groups: list[Group]) -> list[dict[str, Any]]:
    return [{"step": step, "id": g.draw.item.id, "draw": g.draw.index, "task": g.draw.item.task, "sample": k,
             "reward": g.rewards[k], "prediction": r.prediction, "status": r.status, "answers": g.draw.item.answers,
             "truncated": g.truncated[k], "response_tokens": len(g.completions[k]), "response": g.texts[k]}
            for g in groups for k, r in enumerate(g.results)]


def is_finished(out: Path, cfg: Config) -> bool:
    """`final/` is written and the newest checkpoint is the last step."""
    found = checkpoint.list_checkpoints(out)
    return (out / "final").is_dir() and bool(found) and found[-1][0] >= cfg.train.steps


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
    seed_everything(cfg)
    dist, device = setup(cfg.run.device)                                    # torchrun: this rank's place and device
    check_split(cfg.train.prompts_per_step, cfg.train.mini_batches, dist.world)
    tokenizer = load_tokenizer(cfg.model)
    if dist.launched and cfg.rollout.backend == "server":
        raise ConfigError("rollout.backend=server runs in one process (one trainer publishes weights to the "
                          "server); start it without torchrun, or use rollout.backend=engine")
    policy = load_trainable(cfg.model, dist, device)                        # fp32 masters; sharded or autocast
    ref = load_reference(cfg, device, policy, dist)                         # None unless KL is used
    items = items if items is not None else load_items(cfg.data.train, tokenizer, cfg.data.skip_bad)
    prepare_run_dir(out, cfg)                                               # the run starts: config.yaml, log.txt
    optimizer = make_optimizer(cfg, policy)
    state = checkpoint.resume(out, policy, optimizer)                       # {} on a fresh run
    start = state.get("step", 0)
    trackers = Trackers.from_config(cfg, out) if dist.is_main else None
    metrics = MetricsLog(out / "metrics.jsonl", resume_step=state.get("step"), trackers=trackers, write=dist.is_main)
    item_scores = MetricsLog(out / "item_scores.jsonl", resume_step=state.get("step"), write=dist.is_main)
    sampler = PromptSampler(items, cfg.run.seed, cursor=state.get("cursor", 0))
    timers = Timers()
    roller = Roller(cfg, policy, tokenizer, timers, out)
    roller.sync(f"step-{start}")                                           # a rollout server gets the policy first
    advantage_fn = algos.ADVANTAGES.get(cfg.algo.advantage)                 # names resolved once, up front
    obj = objective(cfg)
    progress = StepProgress(cfg.train.steps, start, cfg.run.progress, phase, cfg.run.log_every)
    with progress:
        for step in range(start + 1, cfg.train.steps + 1):
            began, began_cpu = time.perf_counter(), time.process_time()
            reset_peak_memory(device)
            lr = set_learning_rate(optimizer, cfg, step)
            # 1-3) rollout -> reward, refilled until the step has its informative groups (DAPO dynamic sampling)
            collected = collect_groups(lambda n: roll_across_ranks(roller.roll, step, sampler.next(n), dist),
                                       FILTER_SIGNALS[cfg.algo.filter_metric], cfg.train.prompts_per_step,
                                       cfg.algo.max_refills, cfg.algo.dynamic_sampling)
            # 4) advantages, 5) policy update (skipped, and logged, when no group is informative)
            with timers.time("update"):
                adv = advantage_fn(rewards_tensor(collected.groups, cfg.rollout.group_size), eps=cfg.algo.adv_eps)
                update = (policy_update(policy, ref, optimizer, collected.groups, adv, cfg, obj, step, dist)
                          if collected.groups else skipped_update(ref is not None))
            roller.sync(f"step-{step}")                                     # the next rollout samples the new policy
            # 6) metrics, item scores, sample dumps, checkpoint
            elapsed = time.perf_counter() - began
            stats = rollout_metrics(collected.all)
            row = {"step": step, "phase": phase, **stats, **collected.metrics(), **update, "optim/lr": lr,
                   "tokens_per_s": stats["rollout/tokens"] / max(elapsed, 1e-9), **timers.pop(),
                   "time/step": round(elapsed, 4), "time/step_cpu": round(time.process_time() - began_cpu, 4),
                   "dist/world_size": dist.world, **peak_memory(device)}
            for score_row in item_score_rows(step, phase, collected.all):
                item_scores.log(score_row)
            metrics.log(row)
            if dist.is_main and cfg.run.dump_samples_every and step % cfg.run.dump_samples_every == 0:
                dump_samples(out, step, sample_rows(step, collected.all))
            if step % cfg.run.save_every == 0 or step == cfg.train.steps:
                checkpoint.save(out, step, policy, optimizer, None, {"cursor": sampler.cursor, "phase": phase},
                                keep=cfg.run.keep_checkpoints)
            progress.update(step, row)
    metrics.close()
    item_scores.close()
    return save_trained(out / "final", policy, tokenizer, cfg.model, dist)
