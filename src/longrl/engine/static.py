"""Static-shape decoding: every tensor a decode step touches is allocated once, so a GPU can replay it.

    decode = StaticDecode(model, prefill, prefix_lengths, last_tokens, group_size, params, seeds, device)
    steps = decode.run(check_every=8, graph=True)     # a CUDA graph on CUDA; False = the same step, eager
    tokens, logprobs, done = decode.results(steps)    # per sequence, cut after its first stop token

The shared-prefix generator's dynamic decode (`engine/generate.py`) grows the suffix keys by one
position a step, drops finished rows, draws each step's uniforms on the CPU and reads the sampled
tokens back to the host: a host synchronisation and a dozen allocations per step, which is what
bounds a GPU at ~37 ms a step whatever the model. Here one decode step is a fixed sequence of
kernels over fixed shapes:

- K,V: the prompts' keys and values from the prefill, once per prompt (as before), beside a
  zero-initialised buffer of `max_new_tokens` positions per sequence; step t writes position t
  (`index_copy_` at a device-side counter) and attends to the whole buffer with the positions
  after t masked, so the shapes never change (`StaticCascadeContext`).
- Sampling on the device: the uniforms of the whole response are drawn up front, on the CPU, from
  the same per-group `torch.Generator`s and in the same order as the dynamic path draws them step by
  step (group g, step t, sample j is value t*G + j of g's stream), then moved to the device once.
  So a group's tokens still depend neither on its batch nor on the device, and they equal the
  dynamic path's wherever the arithmetic agrees.
- Sampled tokens and their log-probs go to preallocated (steps, B) tables; finished rows keep
  decoding (their extra tokens are cut on the host) and the host reads one flag, "all done?",
  every `check_every` steps.

On CUDA the step is captured once per batch as a CUDA graph (`torch.cuda.CUDAGraph`) after two
warm-up steps, and replayed; the caller falls back to the dynamic path when capture fails.
"""

from __future__ import annotations

import torch

from longrl.engine.attention import CascadeContext, PrefillContext, attention_with_lse
from longrl.engine.sampling import sample_tokens


class StaticCascadeContext(CascadeContext):
    """Cascade attention for decoding with fixed shapes: one new token per sequence per step.

    The suffix buffers hold `capacity` positions per sequence (zeros until written: masked keys must
    not carry NaN into the output); `step` is a device counter of the positions written so far,
    advanced by the caller after each forward.
    """

    def __init__(self, prefix: PrefillContext, prefix_lengths: list[int], group_size: int, capacity: int,
                 device: torch.device):
        super().__init__(prefix, prefix_lengths, [group_size] * len(prefix_lengths), capacity=capacity)
        self.step = torch.zeros((), dtype=torch.long, device=device)                  # positions written
        self.positions = torch.arange(capacity, device=device)                          # (cap,)

    def advance(self, n: int) -> None:
        raise NotImplementedError("a static decode advances `step` on the device")

    def select(self, rows: torch.Tensor) -> None:
        raise NotImplementedError("a static decode keeps every row")

    def _suffix_keys(self, layer: int, k, v):
        if layer not in self.buffers:           # first (eager) step: allocate; a captured step only writes
            shape = (k.shape[0], k.shape[1], self.capacity, k.shape[3])
            self.buffers[layer] = (k.new_zeros(shape), v.new_zeros(shape))
        kb, vb = self.buffers[layer]
        index = self.step.view(1)
        kb.index_copy_(2, index, k)
        vb.index_copy_(2, index, v)
        return kb, vb

    def _query_start(self):
        return self.step                        # on the device: the prompt's window mask moves without the host

    def _last_suffix_position(self, t: int) -> int:
        return self.capacity - 1                # the host's bound for every step of the decode

    def _attend_suffix(self, layer: int, q, k, v, scale: float, window: int | None = None):
        b, heads, t, d = q.shape
        if t != 1:
            raise ValueError(f"a static decode step feeds one token per sequence, got {t}")
        kv_heads = k.shape[1]
        ks, vs = self._suffix_keys(layer, k, v)
        written = self.positions <= self.step
        if window is not None and self.capacity > window:       # a sliding-window layer: the window's latest keys
            written = written & (self.positions > self.step - window)
        valid = written.expand(b * kv_heads, self.capacity)                             # (B*KVH, cap)
        o, lse = attention_with_lse(q.reshape(b * kv_heads, heads // kv_heads, d),
                                    ks.view(b * kv_heads, self.capacity, d), vs.view(b * kv_heads, self.capacity, d),
                                    scale, key_valid=valid, score_budget=self.score_budget)
        return o.view(b, heads, 1, d), lse.view(b, heads, 1)


def group_uniforms(seeds: list[int], group_size: int, steps: int) -> torch.Tensor:
    """The uniforms of a whole response, as the dynamic decode draws them step by step.

    Group i's generator (seeded with seeds[i]) yields G values per step, in sample order:
    row b = i*G + j at step t gets value t*G + j of group i's stream.

    Returns:
        uniforms on the CPU.          # (steps, P*G) float32
    """
    cpu = torch.device("cpu")         # the groups' generators live on the CPU: results match on any device
    tables = [torch.rand(steps * group_size, generator=torch.Generator(device=cpu).manual_seed(int(s)), device=cpu)
              .view(steps, group_size) for s in seeds]
    return torch.stack(tables, 1).reshape(steps, len(seeds) * group_size)


class StaticDecode:
    """The decode loop of one batch of groups with fixed shapes; see the module docstring.

    Args:
        model: the causal LM (cascade attention enabled), in eval mode.
        prefill: the prompts' K,V (prompt[:-1] of each, right-padded; may be empty).
        prefix_lengths: len(prompt) - 1 per prompt.
        last_tokens: prompt[-1] per prompt: what every sample is fed first.
        group_size: G samples per prompt; B = P*G rows.
        params: SamplingParams (max_new_tokens is the number of steps and the buffer capacity).
        seeds: one per prompt, for its uniforms.
        device: where the model runs.
    """

    def __init__(self, model, prefill: PrefillContext, prefix_lengths: list[int], last_tokens: list[int],
                 group_size: int, params, seeds: list[int], device: torch.device):
        self.base, self.head, self.params = model.base_model, model.get_output_embeddings(), params
        steps, rows = params.max_new_tokens, len(prefix_lengths) * group_size
        self.steps, self.rows = steps, rows
        self.cascade = StaticCascadeContext(prefill, prefix_lengths, group_size, steps, device)
        lengths = torch.tensor(prefix_lengths, dtype=torch.long, device="cpu").repeat_interleave(group_size)
        self.start = lengths.to(device)[:, None]                                         # (B, 1) first position
        self.first = torch.tensor(last_tokens, dtype=torch.long, device="cpu").repeat_interleave(group_size).to(device)
        self.feed = self.first.clone()                                                   # (B,) next input token
        self.uniforms = group_uniforms(seeds, group_size, steps).to(device)              # (T, B)
        self.tokens = torch.zeros(steps, rows, dtype=torch.long, device=device)          # (T, B)
        self.logprobs = torch.zeros(steps, rows, dtype=torch.float32, device=device)     # (T, B)
        self.done = torch.zeros(rows, dtype=torch.bool, device=device)                   # (B,) emitted a stop token
        stops = sorted(set(params.stop_token_ids))
        self.stops = torch.tensor(stops, dtype=torch.long, device="cpu").to(device) if stops else None
        # A ready 4D mask makes the decoder skip building one (host syncs, allocations); cascade attention ignores it.
        self.no_mask = torch.ones(rows, 1, 1, 1, dtype=torch.bool, device=device)
        self.cascade.ready_mask = self.no_mask
        self.graph: torch.cuda.CUDAGraph | None = None

    def step(self) -> None:
        """One decode step on the device: forward the fed tokens, sample, record, advance. No host sync."""
        t = self.cascade.step
        hidden = self.base(input_ids=self.feed[:, None], position_ids=self.start + t, use_cache=False,
                           **self.cascade.forward_kwargs()).last_hidden_state[:, -1]   # (B, H); the mask: no_mask
        index = t.view(1)
        tokens, logprobs = sample_tokens(self.head(hidden), self.params, self.uniforms.index_select(0, index)[0])
        self.tokens.index_copy_(0, index, tokens[None])
        self.logprobs.index_copy_(0, index, logprobs[None])
        if self.stops is not None:      # not torch.isin: with many stop ids it sorts and dedups (a host sync on CUDA)
            self.done |= (tokens[:, None] == self.stops[None, :]).any(-1)
        self.feed.copy_(tokens)
        t.add_(1)

    def reset(self) -> None:
        """Back to step 0 (after warm-up): later positions of the K,V buffers are masked until rewritten."""
        self.cascade.step.zero_()
        self.feed.copy_(self.first)
        self.done.zero_()

    def capture(self, warmup: int = 2) -> None:
        """Record one step as a CUDA graph: `warmup` eager steps (the first allocates the buffers), then capture."""
        self.step()
        stream = torch.cuda.Stream(device=self.feed.device)
        stream.wait_stream(torch.cuda.current_stream(self.feed.device))
        with torch.cuda.stream(stream):
            for _ in range(max(warmup - 1, 0)):
                self.step()
        torch.cuda.current_stream(self.feed.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step()
        self.graph = graph
        self.reset()

    def run(self, check_every: int = 8, graph: bool = False, stop=None) -> int:
        """Decode up to max_new_tokens steps, stopping early once every row is done (or, before a step,
        `stop()` says so: the caller then drops the results); returns the steps run.

        With graph=True the step is captured first (CUDA only) and replayed; exceptions from the
        capture propagate (the caller falls back), the step state is then undefined.
        """
        if graph:
            self.capture()
        run = self.graph.replay if self.graph is not None else self.step
        steps = 0
        while steps < self.steps:
            if stop is not None and stop():
                break
            run()
            steps += 1
            if self.stops is not None and steps % check_every == 0 and bool(self.done.all()):
                break
        self.graph = None                      # frees the graph's memory pool with the object
        return steps

    def results(self, steps: int) -> tuple[list[list[int]], list[list[float]], list[bool]]:
        """Per row: tokens up to and including the first stop token, their log-probs, and whether it stopped."""
        tokens = self.tokens[:steps].T.tolist()
        logprobs = self.logprobs[:steps].T.tolist()
        stop = set(self.params.stop_token_ids)
        out_tokens, out_logprobs, done = [], [], []
        for row, lps in zip(tokens, logprobs):
            first = next((i for i, tok in enumerate(row) if tok in stop), None)
            end = len(row) if first is None else first + 1
            out_tokens.append(row[:end])
            out_logprobs.append(lps[:end])
            done.append(first is not None)
        return out_tokens, out_logprobs, done

    def kv_bytes(self) -> int:
        return self.cascade.kv_bytes()
