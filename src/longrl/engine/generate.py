"""Group sampling for RL: G completions per prompt, the prompt prefilled once and its K,V kept once.

    generator = SharedPrefixGenerator(policy, pad_token_id=tokenizer.pad_token_id, groups_per_batch=8)
    params = SamplingParams(max_new_tokens=512, temperature=0.7, top_p=0.95, stop_token_ids=(eos_id,))
    seeds = [group_seed(cfg.run.seed, step, sample.id) for sample in batch]
    groups = generator.generate(prompt_ids, group_size=8, params=params, seeds=seeds)

Each batch of `groups_per_batch` prompts is prefilled once (right-padded, all but the last
token); the G samples of every prompt are then decoded together against their prompt's keys and
values with cascade attention (`longrl.engine.attention`): the prompt's K,V exist once, the samples'
own K,V go to a preallocated buffer written in place. Sequences that stop are dropped from the batch once at least half of it
has finished. Randomness comes from one `torch.Generator` per group seeded with its seed, drawn on
the CPU, so a group's samples depend neither on the other groups of its batch, nor on
`groups_per_batch`, nor on the device count.

`Generator` is the protocol other backends (a vLLM server, ...) implement to plug in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Protocol

import torch

from longrl.engine.attention import (
    CascadeContext,
    PrefillContext,
    enable_cascade_attention,
)
from longrl.engine.logprobs import lm_head_weight


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 1.0          # 0 = greedy
    top_p: float = 1.0                # nucleus: keep the most likely tokens holding this much mass
    top_k: int = 0                    # keep the k most likely tokens; 0 = off
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


@dataclass
class GroupRollout:
    prompt_ids: list[int]
    completions: list[list[int]]      # G token lists; a stop token is included when emitted
    logprobs: list[list[float]]       # per token: log-prob under the distribution sampled from, i.e.
                                      # after temperature, top-k and top-p (renormalised); greedy
                                      # (temperature 0) reports the model's own log-softmax
    truncated: list[bool]             # hit max_new_tokens without emitting a stop token


class Generator(Protocol):
    def generate(self, prompts: list[list[int]], group_size: int, params: SamplingParams,
                 seeds: list[int]) -> list[GroupRollout]: ...


def stop_token_ids(tokenizer, model=None) -> tuple[int, ...]:
    """End-of-turn ids, the one rule for training rollouts and evaluation alike.

    The tokenizer's eos, the model's generation-config eos (an int or a list) and `<|im_end|>` when
    the vocabulary has it (chat-formatted prompts end their turn with it even where eos is another
    token). Sorted, without duplicates.
    """
    candidates = [tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)]
    if "<|im_end|>" in tokenizer.get_vocab():
        candidates.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    ids = set()
    for c in candidates:
        ids.update(i for i in (c if isinstance(c, list | tuple) else [c]) if isinstance(i, int))
    return tuple(sorted(ids))


def group_seed(seed: int, *keys: int | str) -> int:
    """A stable 63-bit seed from the run seed and any keys (step, sample id, ...), same on every machine.

    Example: group_seed(0, 3, "doc-17") is the seed of group "doc-17" at step 3 of a run seeded 0.
    """
    digest = hashlib.sha256(json.dumps([seed, *keys]).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample_tokens(logits: torch.Tensor, params: SamplingParams, uniforms: torch.Tensor):
    """Pick one token per row by inverse-CDF sampling (tokens in id order) with the given uniforms.

    Args:
        logits: next-token logits.                       # (B, V)
        params: temperature, then top_k, then top_p (the smallest set of most likely tokens whose
            mass reaches top_p; tokens tied with its least likely member are kept too).
        uniforms: one draw in [0, 1) per row.            # (B,)
    Returns:
        (tokens, logprobs): chosen ids (B,) int64, and their log-prob under the filtered,
        renormalised distribution (float32; greedy: the model's log-softmax).
    """
    logits = logits.float()
    if params.temperature == 0:
        tokens = logits.argmax(-1)
        return tokens, torch.log_softmax(logits, -1).gather(1, tokens[:, None]).squeeze(1)
    logits = logits / params.temperature
    vocab = logits.shape[-1]
    if 0 < params.top_k < vocab:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, -1)                                                # (B, V)
    if params.top_p < 1:
        probs = probs.masked_fill(probs < nucleus_threshold(probs, params.top_p), 0.0)
    cdf = probs.cumsum(-1)
    total = cdf[:, -1:]
    index = torch.searchsorted(cdf, uniforms[:, None].to(cdf.dtype) * total, right=True).clamp_max(vocab - 1)
    logprobs = (probs.gather(1, index) / total).log().squeeze(1)
    return index.squeeze(1), logprobs


def nucleus_threshold(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Per row, the largest probability t with mass(p >= t) >= top_p: the top-p set is {p >= t}.

    A radix select on the float32 bit patterns (ordered like the values, as p >= 0): three passes
    (11, 11 and 10 bits) each histogram the mass of the still-candidate tokens by their next digit
    and keep the digit where the mass from the top crosses top_p. Exact, and several times faster
    than sorting the vocabulary on a CPU.

    Args:
        probs: probabilities, rows summing to 1.   # (B, V) float32
        top_p: mass to reach, in (0, 1].
    Returns:
        thresholds.                                # (B, 1) float32
    """
    bits = probs.contiguous().view(torch.int32)
    rows = probs.shape[0]
    prefix = torch.zeros(rows, 1, dtype=torch.int32, device=probs.device)   # digits chosen so far
    above = torch.zeros(rows, 1, dtype=probs.dtype, device=probs.device)    # mass above the candidates
    candidate = torch.ones_like(bits, dtype=torch.bool)
    shift = 32
    for width in (11, 11, 10):
        shift -= width
        size = 1 << width
        digit = ((bits >> shift) & (size - 1)).long()                                   # (B, V)
        mass = torch.zeros(rows, size, dtype=probs.dtype, device=probs.device)
        mass.scatter_add_(1, torch.where(candidate, digit, 0), torch.where(candidate, probs, 0.0))
        reach = above + mass.flip(-1).cumsum(-1).flip(-1)        # reach[d] = mass(p >= this digit d)
        chosen = ((reach >= top_p).sum(-1, keepdim=True) - 1).clamp_min(0)                # (B, 1)
        nxt = (chosen + 1).clamp_max(size - 1)
        above = torch.where(chosen + 1 < size, reach.gather(1, nxt), above)
        prefix |= chosen.int() << shift
        candidate &= digit == chosen
    return prefix.view(torch.float32)


class SharedPrefixGenerator:
    """Hugging Face implementation of `Generator`: one prefill per prompt, cascade decoding.

    Args:
        model: a causal LM whose decoder dispatches through transformers.AttentionInterface and
            whose logits are its linear LM head's output (no soft-capping or scaling: raises).
        pad_token_id: id used to right-pad prompts in the prefill batch (never attended to).
        groups_per_batch: prompts decoded together, each with its group_size samples.
        device: where to run; default the model's device.
    """

    def __init__(self, model, pad_token_id: int, groups_per_batch: int = 8, device=None):
        if groups_per_batch < 1:
            raise ValueError(f"groups_per_batch must be >= 1, got {groups_per_batch}")
        self.model, self.pad_token_id, self.groups_per_batch = model, pad_token_id, groups_per_batch
        self.device = torch.device(device) if device is not None else lm_head_weight(model).device
        self.kv_bytes = 0          # largest K,V footprint of one batch in the last generate() call

    def generate(self, prompts: list[list[int]], group_size: int, params: SamplingParams,
                 seeds: list[int]) -> list[GroupRollout]:
        """G = group_size samples of each prompt; seeds[i] drives prompt i's randomness."""
        if len(seeds) != len(prompts):
            raise ValueError(f"one seed per prompt: {len(prompts)} prompts, {len(seeds)} seeds")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        for i, prompt in enumerate(prompts):
            if not prompt:
                raise ValueError(f"prompt {i} is empty")
        enable_cascade_attention(self.model)
        was_training = self.model.training
        self.model.eval()
        self.kv_bytes = 0
        try:
            out = []
            with torch.no_grad():
                for start in range(0, len(prompts), self.groups_per_batch):
                    end = start + self.groups_per_batch
                    out += self._generate_batch(prompts[start:end], group_size, params, seeds[start:end])
            return out
        finally:
            self.model.train(was_training)

    def _generate_batch(self, prompts, group_size, params, seeds) -> list[GroupRollout]:
        # The prefill covers prompt[:-1]; decoding starts by feeding prompt[-1] to every sample,
        # so each step is the same batched cascade forward and nothing needs the prefill's outputs.
        base, head = self.model.base_model, self.model.get_output_embeddings()
        n_prompts, device = len(prompts), self.device
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        prefix_lengths = torch.tensor([len(p) - 1 for p in prompts], device=device)          # (P,)
        prefill = PrefillContext()
        if int(prefix_lengths.max()) > 0:
            ids = torch.full((n_prompts, int(prefix_lengths.max())), self.pad_token_id, dtype=torch.long,
                             device="cpu")                      # filled on the CPU, moved in one copy
            for i, p in enumerate(prompts):
                ids[i, :len(p) - 1] = torch.tensor(p[:-1], dtype=torch.long, device="cpu")
            ids = ids.to(device)
            positions = torch.arange(ids.shape[1], device=device).expand(n_prompts, -1)
            base(input_ids=ids, position_ids=positions, use_cache=False, **prefill.forward_kwargs())
        cascade = CascadeContext(prefill, prefix_lengths.tolist(), [group_size] * n_prompts,
                                 capacity=params.max_new_tokens)

        rows = torch.arange(n_prompts * group_size, device=device)     # original row of each batch row
        feed = torch.tensor([p[-1] for p in prompts], device=device).repeat_interleave(group_size)  # (B,)
        tokens = [[] for _ in range(n_prompts * group_size)]
        logprobs = [[] for _ in range(n_prompts * group_size)]
        done = [False] * (n_prompts * group_size)
        stop = set(params.stop_token_ids)
        for step in range(params.max_new_tokens):
            live = [i for i, r in enumerate(rows.tolist()) if not done[r]]
            if not live:
                break
            if 2 * len(live) <= len(rows):                 # drop finished rows once half have stopped
                keep = torch.tensor(live, device=device)
                cascade.select(keep)
                rows, feed = rows[keep], feed[keep]
            positions = (prefix_lengths[rows // group_size] + step)[:, None]                  # (n, 1)
            hidden = base(input_ids=feed[:, None], position_ids=positions, use_cache=False,
                          **cascade.forward_kwargs()).last_hidden_state[:, -1]                # (n, H)
            cascade.advance(1)
            uniforms = self._uniforms(rows.tolist(), group_size, generators, done).to(device)
            feed, lps = sample_tokens(head(hidden), params, uniforms)
            for r, t, lp in zip(rows.tolist(), feed.tolist(), lps.tolist()):
                if not done[r]:
                    tokens[r].append(t)
                    logprobs[r].append(lp)
                    done[r] = t in stop
        self.kv_bytes = max(self.kv_bytes, cascade.kv_bytes())
        out = []
        for p, prompt in enumerate(prompts):
            span = range(p * group_size, (p + 1) * group_size)
            out.append(GroupRollout(prompt_ids=list(prompt), completions=[tokens[r] for r in span],
                                    logprobs=[logprobs[r] for r in span],
                                    truncated=[not done[r] for r in span]))
        return out

    @staticmethod
    def _uniforms(rows: list[int], group_size: int, generators, done) -> torch.Tensor:
        """One uniform per batch row: every group with a live sample draws group_size values per step."""
        live = sorted({r // group_size for r in rows if not done[r]})
        cpu = torch.device("cpu")                  # the groups' generators live on the CPU: results match on any device
        table = torch.cat([torch.rand(group_size, generator=generators[g], device=cpu) for g in live]
                          + [torch.zeros(1, device=cpu)])
        where = {g: i * group_size for i, g in enumerate(live)}
        index = [where[r // group_size] + r % group_size if r // group_size in where else len(table) - 1
                 for r in rows]
        return table[torch.tensor(index, device=cpu)]
