"""Group sampling for RL: G completions per prompt, the prompt prefilled once and its K,V kept once.

    generator = SharedPrefixGenerator(policy, pad_token_id=tokenizer.pad_token_id, groups_per_batch=8)
    params = SamplingParams(max_new_tokens=512, temperature=0.7, top_p=0.95, stop_token_ids=(eos_id,))
    seeds = [group_seed(cfg.run.seed, step, sample.id) for sample in batch]
    groups = generator.generate(prompt_ids, group_size=8, params=params, seeds=seeds)

Each batch of `groups_per_batch` prompts is prefilled once (right-padded, all but the last
token); the G samples of every prompt are then decoded together against their prompt's keys and
values with cascade attention (`longrl.engine.attention`): the prompt's K,V exist once, the samples'
own K,V go to a preallocated buffer written in place. Two decode paths share the prefill:

- dynamic (the default on CPU): sequences that stop are dropped from the batch once at least half
  of it has finished; the host reads the sampled tokens back every step.
- static (`engine/static.py`, the default on CUDA): fixed shapes, sampling on the device, a stop
  check every `check_every` steps, the step captured and replayed as a CUDA graph. When capture
  fails the generator logs it once and decodes dynamically from then on.

Both give the same tokens for the same seeds wherever the arithmetic agrees (tests/engine/test_static.py).
Randomness comes from one `torch.Generator` per group seeded with its seed, drawn on the CPU, so a
group's samples depend neither on the other groups of its batch, nor on `groups_per_batch`, nor on
the device count.

`Generator` is the protocol other backends (a vLLM / SGLang server: `engine/remote.py`) implement to plug in.
`generate(..., stop=fn)` asks `fn()` before every decode step (and batch) and raises GenerationStopped
once it says True: how `longrl serve` drops the work of a client that went away.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from longrl.engine.attention import (
    CascadeContext,
    PrefillContext,
    enable_cascade_attention,
)
from longrl.engine.distributed import SINGLE, Dist
from longrl.engine.logprobs import lm_head_weight
from longrl.engine.sampling import SamplingParams, nucleus_threshold, sample_tokens
from longrl.engine.static import StaticDecode
from longrl.models.chat import turn_stop_ids

__all__ = ["DECODE_PATHS", "GenerationStopped", "GroupRollout", "Generator", "SamplingParams", "SharedPrefixGenerator",
           "group_seed", "nucleus_threshold", "sample_tokens", "stop_token_ids"]

LOG = logging.getLogger(__name__)
DECODE_PATHS = ("auto", "dynamic", "static", "graph")


class GenerationStopped(Exception):
    """`generate(..., stop=fn)` gave up because `fn()` said so (its work is dropped)."""


@dataclass
class GroupRollout:
    prompt_ids: list[int]
    completions: list[list[int]]      # G token lists; a stop token is included when emitted
    logprobs: list[list[float]]       # per token: log-prob under the distribution sampled from, i.e.
                                      # after temperature, top-k and top-p (renormalised); greedy
                                      # (temperature 0) reports the model's own log-softmax
    truncated: list[bool]             # hit max_new_tokens without emitting a stop token


class Generator(Protocol):
    """What the RL loop samples from: the in-process `SharedPrefixGenerator`, or a model server
    (`engine/remote.py`) that must first be given the policy's current weights."""

    def generate(self, prompts: list[list[int]], group_size: int, params: SamplingParams,
                 seeds: list[int]) -> list[GroupRollout]: ...

    def sync_weights(self, model, version: str, dist: Dist = SINGLE) -> None:
        """Make later generate() calls sample from `model`'s current weights, labelled `version` (every
        rank calls it under torchrun)."""

    def handover_metrics(self) -> dict[str, float]:
        """Time and bytes of the weight hand-overs since the last call (metrics.jsonl's weights/*)."""


def stop_token_ids(tokenizer, model=None) -> tuple[int, ...]:
    """End-of-turn ids, the one rule for training rollouts and evaluation alike (`models/chat.py`).

    The end of the assistant's turn as the tokenizer's own chat template writes it, the tokenizer's
    eos and the model's generation-config eos (an int or a list). Sorted, without duplicates.
    """
    return turn_stop_ids(tokenizer, model)


def group_seed(seed: int, *keys: int | str) -> int:
    """A stable 63-bit seed from the run seed and any keys (step, sample id, ...), same on every machine.

    Example: group_seed(0, 3, "doc-17") is the seed of group "doc-17" at step 3 of a run seeded 0.
    """
    digest = hashlib.sha256(json.dumps([seed, *keys]).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class SharedPrefixGenerator:
    """Hugging Face implementation of `Generator`: one prefill per prompt, cascade decoding.

    Args:
        model: a causal LM whose decoder dispatches through transformers.AttentionInterface and
            whose logits are its linear LM head's output (no soft-capping or scaling: raises).
        pad_token_id: id used to right-pad prompts in the prefill batch (never attended to).
        groups_per_batch: prompts decoded together, each with its group_size samples.
        device: where to run; default the model's device.
        decode: "dynamic" (the batch shrinks as rows stop; one host sync per step), "static"
            (`engine/static.py`: fixed shapes, sampling on the device, eager), "graph" (static,
            captured as a CUDA graph; CUDA only), or "auto": graph on CUDA, dynamic elsewhere.
            When capture fails, "graph" and "auto" log it once and decode dynamically from then on.
        check_every: static decode: steps between the host's checks that every row has stopped.
    """

    def __init__(self, model, pad_token_id: int, groups_per_batch: int = 8, device=None,
                 decode: str = "auto", check_every: int = 8):
        if groups_per_batch < 1:
            raise ValueError(f"groups_per_batch must be >= 1, got {groups_per_batch}")
        if decode not in DECODE_PATHS:
            raise ValueError(f"decode must be one of {', '.join(DECODE_PATHS)}, got {decode!r}")
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.model, self.pad_token_id, self.groups_per_batch = model, pad_token_id, groups_per_batch
        self.device = torch.device(device) if device is not None else lm_head_weight(model).device
        if decode == "graph" and self.device.type != "cuda":
            raise ValueError(f"decode='graph' needs a CUDA device, the model is on {self.device}")
        self.decode, self.check_every = decode, check_every
        self.kv_bytes = 0          # largest K,V footprint of one batch in the last generate() call
        self.decode_path = ""      # how the last batch was decoded: dynamic | static | cuda-graph
        self._graphs_failed = False

    def sync_weights(self, model, version: str, dist: Dist = SINGLE) -> None:
        """Nothing to do: this generator samples from the live model it was given."""
        if model is not self.model:
            raise ValueError("SharedPrefixGenerator samples from the model it was built with")

    def handover_metrics(self) -> dict[str, float]:
        """None: no weights are handed over in process."""
        return {}

    def generate(self, prompts: list[list[int]], group_size: int, params: SamplingParams,
                 seeds: list[int], stop: Callable[[], bool] | None = None) -> list[GroupRollout]:
        """G = group_size samples of each prompt; seeds[i] drives prompt i's randomness.

        `stop`, when given, is asked before each batch and decode step; once it returns True the call
        raises GenerationStopped (the results of that call are lost).
        """
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
                    _check(stop)
                    end = start + self.groups_per_batch
                    out += self._generate_batch(prompts[start:end], group_size, params, seeds[start:end], stop)
            return out
        finally:
            self.model.train(was_training)

    def _generate_batch(self, prompts, group_size, params, seeds, stop=None) -> list[GroupRollout]:
        # The prefill covers prompt[:-1]; decoding starts by feeding prompt[-1] to every sample,
        # so each step is the same batched cascade forward and nothing needs the prefill's outputs.
        prefill, prefix_lengths = self._prefill(prompts)
        _check(stop)
        use_graph = self.decode in ("graph", "auto") and self.device.type == "cuda" and not self._graphs_failed
        if self.decode == "static" or use_graph:
            decoded = self._decode_static(prefill, prefix_lengths, prompts, group_size, params, seeds, use_graph, stop)
            if decoded is not None:
                return decoded
        self.decode_path = "dynamic"
        return self._decode_dynamic(prefill, prefix_lengths, prompts, group_size, params, seeds, stop)

    def _prefill(self, prompts) -> tuple[PrefillContext, list[int]]:
        """Causal forward of every prompt but its last token, right-padded; keeps the K,V."""
        prefix_lengths = [len(p) - 1 for p in prompts]
        prefill = PrefillContext()
        width = max(prefix_lengths)
        if width > 0:
            ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long,
                             device="cpu")                      # filled on the CPU, moved in one copy
            for i, p in enumerate(prompts):
                ids[i, :len(p) - 1] = torch.tensor(p[:-1], dtype=torch.long, device="cpu")
            ids = ids.to(self.device)
            positions = torch.arange(width, device=self.device).expand(len(prompts), -1)
            self.model.base_model(input_ids=ids, position_ids=positions, use_cache=False, **prefill.forward_kwargs())
        return prefill, prefix_lengths

    def _decode_static(self, prefill, prefix_lengths, prompts, group_size, params, seeds,
                       use_graph: bool, stop=None) -> list[GroupRollout] | None:
        """The static decode (`engine/static.py`); None when the CUDA graph cannot be captured."""
        decode = StaticDecode(self.model, prefill, prefix_lengths, [p[-1] for p in prompts], group_size, params,
                              seeds, self.device)
        try:
            steps = decode.run(self.check_every, graph=use_graph, stop=stop)
        except Exception as exc:     # a capture failure of any kind: log once, decode without graphs
            if not use_graph:
                raise
            self._graphs_failed = True
            LOG.warning("CUDA graph capture of the decode step failed (%s: %s); decoding without CUDA graphs "
                        "from now on", type(exc).__name__, exc)
            return None
        _check(stop)
        self.decode_path = "cuda-graph" if use_graph else "static"
        tokens, logprobs, done = decode.results(steps)
        self.kv_bytes = max(self.kv_bytes, decode.kv_bytes())
        return _groups(prompts, group_size, tokens, logprobs, done)

    def _decode_dynamic(self, prefill, prefix_lengths, prompts, group_size, params, seeds, stop=None) -> list[GroupRollout]:
        """Today's decode: rows that stop leave the batch once half of it has; a host sync per step."""
        base, head = self.model.base_model, self.model.get_output_embeddings()
        n_prompts, device = len(prompts), self.device
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        cascade = CascadeContext(prefill, prefix_lengths, [group_size] * n_prompts, capacity=params.max_new_tokens)
        prefix = torch.tensor(prefix_lengths, device=device)                                  # (P,)
        rows = torch.arange(n_prompts * group_size, device=device)     # original row of each batch row
        feed = torch.tensor([p[-1] for p in prompts], device=device).repeat_interleave(group_size)  # (B,)
        tokens = [[] for _ in range(n_prompts * group_size)]
        logprobs = [[] for _ in range(n_prompts * group_size)]
        done = [False] * (n_prompts * group_size)
        stops = set(params.stop_token_ids)
        for step in range(params.max_new_tokens):
            live = [i for i, r in enumerate(rows.tolist()) if not done[r]]
            if not live:
                break
            _check(stop)
            if 2 * len(live) <= len(rows):                 # drop finished rows once half have stopped
                keep = torch.tensor(live, device=device)
                cascade.select(keep)
                rows, feed = rows[keep], feed[keep]
            positions = (prefix[rows // group_size] + step)[:, None]                          # (n, 1)
            hidden = base(input_ids=feed[:, None], position_ids=positions, use_cache=False,
                          **cascade.forward_kwargs()).last_hidden_state[:, -1]                # (n, H)
            cascade.advance(1)
            uniforms = self._uniforms(rows.tolist(), group_size, generators, done).to(device)
            feed, lps = sample_tokens(head(hidden), params, uniforms)
            for r, t, lp in zip(rows.tolist(), feed.tolist(), lps.tolist()):
                if not done[r]:
                    tokens[r].append(t)
                    logprobs[r].append(lp)
                    done[r] = t in stops
        self.kv_bytes = max(self.kv_bytes, cascade.kv_bytes())
        return _groups(prompts, group_size, tokens, logprobs, done)

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


def _check(stop: Callable[[], bool] | None) -> None:
    if stop is not None and stop():
        raise GenerationStopped("generation stopped on request")


def _groups(prompts, group_size: int, tokens, logprobs, done) -> list[GroupRollout]:
    """Per prompt, its G rows as a GroupRollout (row b = prompt b // G, sample b % G)."""
    out = []
    for p, prompt in enumerate(prompts):
        span = range(p * group_size, (p + 1) * group_size)
        out.append(GroupRollout(prompt_ids=list(prompt), completions=[tokens[r] for r in span],
                                logprobs=[logprobs[r] for r in span], truncated=[not done[r] for r in span]))
    return out
