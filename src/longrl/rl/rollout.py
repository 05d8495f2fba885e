"""Rollout + reward for batches of draws (`Roller`): what step 1-2 of the RL loop and the curriculum's
offline scoring both run, and the per-step rows they log.

    roller = Roller(cfg, policy, tokenizer, Timers(), out)
    groups = roller.roll(step, draws)            # G completions per draw, decoded and scored

The backend is `rollout.backend`: the in-process shared-prefix generator (`engine/generate.py`), or
an OpenAI-compatible server (`engine/remote.py`) that reloads the weights `sync` writes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from longrl.config import Config
from longrl.data.prompt import encode_prompt
from longrl.data.schema import Sample
from longrl.engine.generate import (
    Generator,
    GroupRollout,
    SamplingParams,
    SharedPrefixGenerator,
    group_seed,
    stop_token_ids,
)
from longrl.engine.distributed import SINGLE, Dist
from longrl.engine.remote import RemoteGenerator, RolloutServerError
from longrl.engine.sharding import rollout_weights
from longrl.errors import ConfigError
from longrl.models.loading import DTYPES, compute_dtype
from longrl.rewards.hybrid import HybridReward, RewardInput, RewardResult, summarize
from longrl.rl.groups import Group, is_correct
from longrl.rl.sampler import Draw
from longrl.tracking import Timers


def make_generator(cfg: Config, policy, tokenizer, out: Path | None) -> Generator:
    """The rollout backend `rollout.backend` names: the in-process shared-prefix generator, or a model
    server (`engine/remote.py`) loading the weights the trainer writes to `rollout.server.weights_dir`
    (default `out/served`; without a run directory, a folder under the system's temporary directory)."""
    r = cfg.rollout
    if r.backend == "server":
        weights_dir = Path(out) / "served" if out is not None else Path(tempfile.gettempdir()) / "longrl-served"
        served = compute_dtype(cfg.model) if r.server.dtype == "auto" else DTYPES[r.server.dtype]
        return RemoteGenerator(r.server, weights_dir, served)
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

    def __init__(self, cfg: Config, policy, tokenizer, timers: Timers, out: Path | None = None, dist: Dist = SINGLE):
        self.cfg, self.policy, self.tokenizer, self.timers, self.dist = cfg, policy, tokenizer, timers, dist
        self.stops = stop_token_ids(tokenizer, policy)                # the same rule evaluation uses
        r = cfg.rollout
        self.params = SamplingParams(max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p,
                                     top_k=r.top_k, stop_token_ids=self.stops)
        self.generator = make_generator(cfg, policy, tokenizer, out)
        self.reward = HybridReward(cfg.reward)
        self.synced = False

    def sync(self, version: str) -> None:
        """Every rank calls it (a server's hand-over gathers sharded weights; rank 0 writes and reloads)."""
        with self.timers.time("sync"):
            self.generator.sync_weights(self.policy, version, self.dist)
        self.synced = True

    def handover_metrics(self) -> dict[str, float]:
        """weights/sync_s and weights/sync_bytes since the last call (a server backend; {} in process)."""
        return self.generator.handover_metrics()

    def encode(self, item: Sample) -> list[int]:
        try:
            return encode_prompt(self.tokenizer, item, self.cfg.rollout.max_input_tokens).ids
        except ValueError as exc:
            raise ConfigError(f"rollout.max_input_tokens: {exc}") from None

    def sample(self, prompts: list[list[int]], n: int, params: SamplingParams, seeds: list[int],
               version: str) -> list[GroupRollout]:
        """n completions of each prompt from the current policy (every rank calls it, maybe with none: in
        process, sharded weights are gathered once for all of them; a server's ranks agree on failures)."""
        if not self.synced:
            self.sync(version)
        if not isinstance(self.generator, SharedPrefixGenerator):
            self.policy.eval()
            return self.from_server(prompts, n, params, seeds)      # the server holds the weights: nothing to gather
        with torch.no_grad(), rollout_weights(self.policy) as model:
            self.policy.eval()
            self.generator.model = model                 # the policy, or its twin holding gathered weights
            try:
                return self.generator.generate(prompts, n, params, seeds) if prompts else []
            finally:
                self.generator.model = self.policy

    def from_server(self, prompts: list[list[int]], n: int, params: SamplingParams,
                    seeds: list[int]) -> list[GroupRollout]:
        """This rank's groups from the rollout server (each rank sends its own groups' requests). Under
        torchrun the ranks then agree: a server failure on any rank is raised on every rank, so all stop
        with the same error instead of some waiting in the next collective."""
        failure = None
        try:
            outs = self.generator.generate(prompts, n, params, seeds) if prompts else []
        except RolloutServerError as exc:
            if not self.dist.launched:
                raise
            outs, failure = [], str(exc)
        failures = [(rank, f) for rank, f in enumerate(self.dist.gather_json(failure)) if f is not None]
        if failures:
            rank, first = failures[0]
            raise RolloutServerError(f"{first} (rank {rank} of {self.dist.world})")
        return outs

    def roll(self, step: int, draws: list[Draw]) -> list[Group]:
        G = self.cfg.rollout.group_size
        with self.timers.time("rollout"):
            prompts = [self.encode(d.item) for d in draws]
            seeds = [group_seed(self.cfg.run.seed, step, d.index) for d in draws]
            outs = self.sample(prompts, G, self.params, seeds, f"rollout-{step}")
        with self.timers.time("reward"):
            texts, results = self.score([d.item for d in draws], outs, self.params.max_new_tokens)
        return [Group(d, list(out.prompt_ids), [list(c) for c in out.completions], list(out.truncated), ts, res,
                      [r.score for r in res]) for d, out, ts, res in zip(draws, outs, texts, results)]

    def score(self, items: list[Sample], outs: list[GroupRollout],
              max_new_tokens: int) -> tuple[list[list[str]], list[list[RewardResult]]]:
        """Decode and score the completions of each item (one reward batch for all): (texts, results) per item."""
        texts = [[self.decode(c) for c in out.completions] for out in outs]
        inputs = [RewardInput(task=item.task, question=item.question, answers=list(item.answers), response=t,
                              response_tokens=len(c), max_response_tokens=max_new_tokens, context=item.context)
                  for item, out, ts in zip(items, outs, texts) for t, c in zip(ts, out.completions)]
        flat = self.reward.score(inputs)
        starts = [0]
        for out in outs:
            starts.append(starts[-1] + len(out.completions))
        return texts, [flat[a:b] for a, b in zip(starts, starts[1:])]

    def decode(self, ids: list[int]) -> str:
        if ids and ids[-1] in self.stops:
            ids = ids[:-1]
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def rollout_metrics(groups: list[Group]) -> dict[str, float]:
    """Reward, accuracy and length statistics over every response generated in the step; accuracy/<task>
    is the accuracy of the step's responses to items of each task (tasks rolled out in the step only)."""
    results = [r for g in groups for r in g.results]
    lengths = [len(c) for g in groups for c in g.completions]
    prompts = [len(g.prompt_ids) for g in groups]        # tokens, as rendered (documents middle-truncated)
    truncated = [t for g in groups for t in g.truncated]
    correct = [is_correct(r) for r in results]
    by_task: dict[str, list[bool]] = {}
    for g in groups:
        by_task.setdefault(g.draw.item.task, []).extend(is_correct(r) for r in g.results)
    n = max(len(lengths), 1)
    return {
        **summarize(results),
        "accuracy": sum(correct) / n,                     # rule-or-judge says correct, before shaping
        **{f"accuracy/{task}": sum(flags) / len(flags) for task, flags in sorted(by_task.items()) if flags},
        "response_len/mean": sum(lengths) / n,
        "response_len/max": float(max(lengths, default=0)),
        "response_len/min": float(min(lengths, default=0)),
        "truncated_frac": sum(truncated) / n,
        "rollout/prompt_len_mean": sum(prompts) / max(len(groups), 1),
        "rollout/prompt_len_max": float(max(prompts, default=0)),
        "rollout/prompt_len_min": float(min(prompts, default=0)),
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
