"""Training attention as one masked attention call: flex_attention (compiled, CUDA) and masked SDPA (CPU).

Both training masks longrl uses are one rule over per-token ids (`allowed`):

- shared prompt (RL update): the queries are the B completions' tokens, the keys are the P prompts' keys
  followed by the completions' own keys; a completion token sees its group's prompt (real positions only)
  and the earlier tokens of its own completion;
- packed rows (SFT): every token sees the earlier tokens of its own segment (document-causal).

A sliding-window layer (window W) keeps a key only if it is one of the W latest positions, the query's
own included (Hugging Face's definition). Each query and key carries (seq, group, pos): `seq` is its
sequence (or PROMPT for a prompt key), `group` the prompt it belongs to, `pos` its absolute position;
padding queries and keys get ids that match nothing, so they see and are seen by nothing (output 0).

On CUDA `flex_attention` runs the mask as a block mask (blocks wholly outside it are skipped), through
`torch.compile` once per shape bucket: query and key lengths are padded up to `bucket(n)`, so a run
meets a bounded number of shapes (and compiles); the block masks are made once per forward and shared
by the layers (`MaskCache`). On the CPU flex_attention runs the forward only (torch refuses its
backward there), which is how the tests check it against the other paths.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

PROMPT = -1         # `seq` of a prompt key
PAD_QUERY = -2      # ids of a padding query (matches no key)
PAD_KEY = -3        # ids of a padding key (matches no query)
BLOCK = 128         # flex_attention's block size; buckets are multiples of it
RECOMPILE_LIMIT = 64  # compiled shapes kept per function (buckets x windows x dtypes stay far below)


@dataclass(frozen=True)
class TokenIds:
    """(seq, group, pos) of each token, one row per batch entry.  # each (N, L) int64"""

    seq: torch.Tensor
    group: torch.Tensor
    pos: torch.Tensor

    def padded(self, length: int, fill: int) -> TokenIds:
        """The same ids right-padded to `length` tokens with `fill` (PAD_QUERY or PAD_KEY)."""
        extra = length - self.seq.shape[-1]
        pad = lambda t: F.pad(t, (0, extra), value=fill) if extra else t  # noqa: E731
        return TokenIds(pad(self.seq), pad(self.group), pad(self.pos))

    def rows(self, start: int, end: int) -> TokenIds:
        """Tokens [start, end) of every row."""
        return TokenIds(self.seq[:, start:end], self.group[:, start:end], self.pos[:, start:end])


def allowed(q_seq, q_group, q_pos, k_seq, k_group, k_pos, window: int | None = None):
    """Whether a query may attend to a key (elementwise; broadcasts, and works on flex's index scalars).

    A key is allowed if it is in the query's own sequence or in its group's prompt, not after the query,
    and (with a window) one of the `window` latest positions.
    """
    mine = (k_seq == q_seq) | ((k_seq == PROMPT) & (k_group == q_group))
    ok = mine & (k_pos <= q_pos)
    if window is not None:
        ok = ok & (k_pos > q_pos - window)
    return ok


def dense_mask(queries: TokenIds, keys: TokenIds, window: int | None = None) -> torch.Tensor:
    """(N, Lq, Lk) boolean mask of `allowed` (what masked SDPA is given)."""
    return allowed(queries.seq[:, :, None], queries.group[:, :, None], queries.pos[:, :, None],
                   keys.seq[:, None, :], keys.group[:, None, :], keys.pos[:, None, :], window)


def shared_prompt_ids(prefix_lengths: list[int], max_len: int, groups: list[int], group_sizes: list[int],
                      t: int, device) -> tuple[TokenIds, TokenIds]:
    """Ids of the shared-prompt layout, one batch row.

    Queries: the B = sum(group_sizes) completions' t tokens each, sequence-major. Keys: the P prompts'
    rows of `max_len` keys (prompt p real up to prefix_lengths[p]), then the B completions' t keys.
    Group i's sequences read prompt row groups[i]; completion tokens sit at positions prefix_length + j.
    """
    cpu = torch.device("cpu")
    p = len(prefix_lengths)
    lengths = torch.tensor(prefix_lengths, dtype=torch.long, device=cpu)
    group = torch.repeat_interleave(torch.tensor(groups, dtype=torch.long, device=cpu),
                                    torch.tensor(group_sizes, dtype=torch.long, device=cpu))          # (B,)
    b = group.numel()
    seq = torch.arange(b, device=cpu).repeat_interleave(t)
    q_group = group.repeat_interleave(t)
    q_pos = (lengths[group][:, None] + torch.arange(t, device=cpu)[None, :]).reshape(-1)
    k_pos_prompt = torch.arange(max_len, device=cpu).repeat(p)
    k_row = torch.arange(p, device=cpu).repeat_interleave(max_len)
    real = k_pos_prompt < lengths[k_row]
    k_seq = torch.cat([torch.where(real, PROMPT, PAD_KEY), seq])
    k_group = torch.cat([torch.where(real, k_row, PAD_KEY), q_group])
    k_pos = torch.cat([k_pos_prompt, q_pos])
    to = lambda x: x[None].to(device)  # noqa: E731
    return TokenIds(to(seq), to(q_group), to(q_pos)), TokenIds(to(k_seq), to(k_group), to(k_pos))


def packed_ids(segments: list[list[int]], width: int, device) -> tuple[TokenIds, TokenIds]:
    """Ids of packed rows (queries and keys are the same tokens): segment index, position in the row."""
    rows = []
    for r, lengths in enumerate(segments):
        if sum(lengths) > width:
            raise ValueError(f"row {r}: segments {list(lengths)} hold more than the row's {width} tokens")
        ids = [i for i, n in enumerate(lengths) for _ in range(n)]
        rows.append(ids + [-1] * (width - len(ids)))
    seq = torch.tensor(rows, dtype=torch.long, device="cpu").reshape(len(segments), width)
    pos = torch.arange(width, device="cpu").expand(len(segments), width)
    q_seq, k_seq = torch.where(seq < 0, PAD_QUERY, seq), torch.where(seq < 0, PAD_KEY, seq)
    to = lambda x: x.to(device)  # noqa: E731
    return TokenIds(to(q_seq), to(q_seq), to(pos)), TokenIds(to(k_seq), to(k_seq), to(pos))


def bucket(n: int) -> int:
    """The padded length for n tokens: a multiple of BLOCK in {1, 1.5} x 2^k blocks (<= 2 sizes per doubling)."""
    blocks = max(1, -(-n // BLOCK))
    size = 1
    while True:
        for candidate in (size, size + size // 2):
            if candidate >= blocks:
                return candidate * BLOCK
        size *= 2


@functools.cache
def compiled_flex_attention():
    """flex_attention under torch.compile (one compile per shape bucket, window and dtype; cached by torch)."""
    import torch._dynamo.config as dynamo_config   # the compiler's settings load only when flex runs

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(flex_attention, dynamic=False)


def block_mask(queries: TokenIds, keys: TokenIds, window: int | None, compiled: bool | None = None):
    """flex_attention's BlockMask of `allowed` over bucket-padded ids.

    `compiled` (default: on CUDA) builds it block by block under torch.compile, never the dense
    (queries x keys) mask; a new layout of the same bucket reuses the compiled builder.
    """
    qs, qg, qp, ks, kg, kp = queries.seq, queries.group, queries.pos, keys.seq, keys.group, keys.pos

    def mask_mod(b, h, q, k):
        return allowed(qs[b, q], qg[b, q], qp[b, q], ks[b, k], kg[b, k], kp[b, k], window)

    n, lq, lk = qs.shape[0], qs.shape[1], ks.shape[1]
    compiled = qs.device.type == "cuda" if compiled is None else compiled
    return create_block_mask(mask_mod, n, None, lq, lk, device=qs.device, BLOCK_SIZE=BLOCK, _compile=compiled)


class MaskCache:
    """Block masks (and padded ids) of one forward, made on first use and shared by every layer."""

    def __init__(self, queries: TokenIds, keys: TokenIds):
        self.queries = queries.padded(bucket(queries.seq.shape[1]), PAD_QUERY)
        self.keys = keys.padded(bucket(keys.seq.shape[1]), PAD_KEY)
        self._masks: dict[int | None, object] = {}

    def get(self, window: int | None):
        if window not in self._masks:
            self._masks[window] = block_mask(self.queries, self.keys, window)
        return self._masks[window]


def flex_attend(q, k, v, masks: MaskCache, scale: float, window: int | None, compiled: bool = True) -> torch.Tensor:
    """Attention of q (N, H, Lq, D) to k, v (N, KVH, Lk, D) under the cached mask; returns (N, H, Lq, D).

    Lengths are padded to the cache's buckets (padding is masked), so the compiled kernel sees few shapes.
    `compiled=False` runs torch's eager flex_attention (a dense reference; forward only on the CPU).
    """
    if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise NotImplementedError("flex_attention has no backward on the CPU: train.attention / sft.attention "
                                  "'flex' needs CUDA for training (use 'auto', 'sdpa' or 'blocks' on the CPU)")
    lq, lk = q.shape[2], k.shape[2]
    pq, pk = masks.queries.seq.shape[1] - lq, masks.keys.seq.shape[1] - lk
    if pq:
        q = F.pad(q, (0, 0, 0, pq))
    if pk:
        k, v = F.pad(k, (0, 0, 0, pk)), F.pad(v, (0, 0, 0, pk))
    fn = compiled_flex_attention() if compiled else flex_attention
    out = fn(q, k, v, block_mask=masks.get(window), scale=scale, enable_gqa=q.shape[1] != k.shape[1])
    return out[:, :, :lq]


def shared_prompt_flex(q, k, v, prompt_k, prompt_v, masks: MaskCache, scale: float, window: int | None,
                       compiled: bool = True) -> torch.Tensor:
    """B completions (q, k, v: (B, H|KVH, T, D)) against P prompts (prompt_k/v: (P, KVH, Lp, D)) and themselves.

    One flex_attention call over a single batch row (queries: all completion tokens; keys: every prompt's
    keys, then every completion's), under `masks` from `shared_prompt_ids`. Returns (B, H, T, D).
    """
    b, heads, t, d = q.shape
    kv_heads = k.shape[1]
    flat = lambda x, h: x.transpose(0, 1).reshape(1, h, -1, d)  # noqa: E731   (N, h, L, D) -> (1, h, N*L, D)
    keys = torch.cat([flat(prompt_k, kv_heads), flat(k, kv_heads)], 2)
    values = torch.cat([flat(prompt_v, kv_heads), flat(v, kv_heads)], 2)
    out = flex_attend(flat(q, heads), keys, values, masks, scale, window, compiled)      # (1, H, B*T, D)
    return out.view(heads, b, t, d).transpose(0, 1)


@functools.lru_cache(maxsize=4)
def _packed_masks(segments: tuple, width: int, device: str) -> MaskCache:
    return MaskCache(*packed_ids([list(s) for s in segments], width, torch.device(device)))


def packed_flex(query, key, value, segments: list[list[int]], scale: float | None, window: int | None,
                compiled: bool = True) -> torch.Tensor:
    """Document-causal attention over packed rows (query (R, H, T, D), key/value (R, KVH, T, D)), one call.

    The layers of a forward share its block masks (kept for the last few segment layouts). Padding
    after a row's last segment gives 0, as `engine.packed.attend_segments` does. Returns (R, H, T, D).
    """
    masks = _packed_masks(tuple(tuple(s) for s in segments), query.shape[2], str(query.device))
    scale = scale if scale is not None else query.shape[-1] ** -0.5
    return flex_attend(query, key, value, masks, scale, window, compiled)
