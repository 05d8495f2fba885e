"""Ulysses sequence parallelism: N ranks split each training sequence, all-to-all around attention.

    dist = init(dist, cfg.train.sequence_parallel, "train.sequence_parallel", cfg.model)  # start-up checks
    policy = load_trainable(cfg.model, dist, device)      # `prepare` attaches the group to the model
    sp = attached(policy)                                 # None without sequence parallelism
    ids = sp.columns(ids); hidden = base(ids, position_ids=sp.columns(pos), **sp.forward_kwargs(), ...)
    full = sp.gather(local_values)                        # (B, T/N) -> (B, T), differentiable

The layout (DeepSpeed-Ulysses; verl's `ulysses_sequence_parallel_size`): world = dp x sp ranks on a
2-D device mesh ("dp", "sp"); the sp ranks of a group are consecutive (rank // sp is the data rank)
and see the same micro-batches. Each holds T/N consecutive positions of every sequence (right-padded
to a multiple of N), with their global positions, so rotary embeddings are the unsharded ones.
Embeddings, norms, MLPs and the LM head are per token and run on the local positions. Around
attention, an all-to-all turns (B, H, T/N, D) sequence shards into (B, H/N, T, D) head shards:
each rank then attends its H/N query heads (and KVH/N key/value heads) over the whole sequence
with whatever inner attention runs (plain SDPA, cascade, packed), and a second all-to-all turns the
output back into sequence shards. In the shared-prompt forward this means each rank keeps the
whole prompt's keys and values for its heads, which is what its completions' queries read.

Per-token results (log-probs, entropy, NLL) are gathered to (B, T) on every rank of the group and
the loss is computed there, the same on each: the gather's backward keeps the rank's own columns
only, so the ranks' parameter gradients add up (FSDP2's sum) to the unsharded gradient. FSDP2
shards the weights over all world ranks (one flat mesh; `train.offload` keeps those shards on the
CPU, which the exchanges never touch: activations only); loops sum their metrics over data ranks
(`Dist.data_sum`). Refused at start-up (`init`: exit 2, naming the key): N > 1 without torchrun, a
world size or a query / key-value head count that N does not divide, and LoRA (`model.lora`: one
process). Rollout and validation are unchanged: the groups are split over all world ranks, not over
data replicas, so each group is sampled once, by one rank (in process with the full-weight twin, or
requested from a rollout server, `rollout.backend: server`, whose hand-over gathers the weights as
without sequence parallelism), and the gather then gives every replica the step's groups.
"""

from __future__ import annotations

import dataclasses
import weakref

import torch
import torch.distributed as tdist

from longrl.config.model import ModelConfig
from longrl.engine.distributed import Dist
from longrl.errors import ConfigError
from longrl.models.shapes import architecture

SP_KWARG = "longrl_sp"
_ATTACHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()      # model -> SequenceParallel
_MESHES: dict[tuple[int, int], object] = {}                             # (world, sp) -> DeviceMesh


# --- the pure reshapes around the exchange: chunk i of a packed tensor goes to rank i -------------------------

def pack_heads(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, H, Tl, D) local positions, all heads -> (n, B, H/n, Tl, D): chunk i holds heads block i."""
    b, h, t, d = x.shape
    return x.reshape(b, n, h // n, t, d).transpose(0, 1).contiguous()


def unpack_sequence(chunks: torch.Tensor) -> torch.Tensor:
    """(n, B, Hl, Tl, D), chunk j = rank j's positions of my heads -> (B, Hl, n*Tl, D)."""
    n, b, h, t, d = chunks.shape
    return chunks.permute(1, 2, 0, 3, 4).reshape(b, h, n * t, d)


def pack_sequence(y: torch.Tensor, n: int) -> torch.Tensor:
    """(B, T, Hl, D) attention output, my heads -> (n, B, T/n, Hl, D): chunk i holds positions block i."""
    b, t, h, d = y.shape
    return y.reshape(b, n, t // n, h, d).transpose(0, 1).contiguous()


def unpack_heads(chunks: torch.Tensor) -> torch.Tensor:
    """(n, B, Tl, Hl, D), chunk j = rank j's heads of my positions -> (B, Tl, n*Hl, D)."""
    n, b, t, h, d = chunks.shape
    return chunks.permute(1, 2, 0, 3, 4).reshape(b, t, n * h, d)


class _AllToAll(torch.autograd.Function):
    """Chunk i of the input goes to rank i; chunk j of the output came from rank j. Its adjoint is itself."""

    @staticmethod
    def forward(ctx, chunks, group):
        ctx.group = group
        chunks = chunks.contiguous()
        out = torch.empty_like(chunks)
        tdist.all_to_all_single(out, chunks, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()              # (the buffer below must be contiguous too: empty_like keeps strides)
        out = torch.empty_like(grad)
        tdist.all_to_all_single(out, grad, group=ctx.group)
        return out, None


class _GatherColumns(torch.autograd.Function):
    """Concatenate every rank's block along `dim`; the result is used the same on every rank (a replicated
    loss), so the backward keeps this rank's block of the gradient, unsummed."""

    @staticmethod
    def forward(ctx, x, group, size: int, rank: int, dim: int):
        ctx.rank, ctx.dim, ctx.width = rank, dim, x.shape[dim]
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(size)]
        tdist.all_gather(parts, x, group=group)
        return torch.cat(parts, dim)

    @staticmethod
    def backward(ctx, grad):
        return grad.narrow(ctx.dim, ctx.rank * ctx.width, ctx.width), None, None, None, None


class SequenceParallel:
    """This rank's sequence-parallel group: `size` ranks, this one at `rank`, over the process `group`."""

    def __init__(self, group, size: int, rank: int):
        self.group, self.size, self.rank = group, size, rank

    def forward_kwargs(self) -> dict:
        """Keyword arguments of a decoder forward over local positions (reach the attention function)."""
        return {SP_KWARG: self}

    def padded(self, length: int) -> int:
        """`length` rounded up to a multiple of the group size."""
        return -(-length // self.size) * self.size

    def columns(self, x: torch.Tensor, pad_value=0) -> torch.Tensor:
        """This rank's block of dim 1 of `x` (B, T, ...), after right-padding T with `pad_value` to a multiple of size."""
        width = self.padded(x.shape[1])
        if width != x.shape[1]:
            pad = x.new_full((x.shape[0], width - x.shape[1], *x.shape[2:]), pad_value)
            x = torch.cat([x, pad], 1)
        block = width // self.size
        return x[:, self.rank * block:(self.rank + 1) * block]

    def gather(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """Every rank's block of `x` concatenated along `dim` (differentiable; see _GatherColumns)."""
        return _GatherColumns.apply(x, self.group, self.size, self.rank, dim)

    def exchange(self, chunks: torch.Tensor) -> torch.Tensor:
        return _AllToAll.apply(chunks, self.group)

    def attention(self, inner, module, query, key, value, attention_mask, **kwargs):
        """`inner` (an AttentionInterface function) over the whole sequence for this rank's heads.

        query (B, H, T/N, D), key/value (B, KVH, T/N, D) -> output (B, T/N, H, D), as `inner` returns it.
        """
        if attention_mask is not None and not (isinstance(attention_mask, torch.Tensor) and attention_mask.numel() == 1):
            raise NotImplementedError("sequence-parallel attention cannot use a mask built for the local positions; "
                                      "run the decoder with a longrl attention context (causal, cascade or packed)")
        n = self.size
        if query.shape[1] % n or key.shape[1] % n:
            raise ValueError(f"{query.shape[1]} query / {key.shape[1]} key-value heads do not split over {n} ranks")
        q, k, v = (unpack_sequence(self.exchange(pack_heads(t, n))) for t in (query, key, value))
        out, _ = inner(module, q, k, v, attention_mask, **kwargs)                     # (B, T, H/N, D)
        return unpack_heads(self.exchange(pack_sequence(out, n))), None


def check_heads(heads: int, kv_heads: int, size: int, key: str) -> None:
    """Refuse a model whose query or key/value heads are not multiples of `size` (naming the config key)."""
    if heads % size or kv_heads % size:
        raise ConfigError(f"{key}={size}: the model has {heads} attention heads and {kv_heads} key/value heads; "
                          f"both must be multiples of {size} (each of the {size} ranks attends with 1/{size} of them)")


def init(dist: Dist, size: int, key: str, model: ModelConfig, refused: dict[str, bool] | None = None) -> Dist:
    """Start-up checks and the (dp, sp) mesh; returns `dist` with its sequence-parallel size set.

    Args:
        size: ranks per sequence (1 = off: `dist` unchanged).
        key: the config key that set `size` (named in every error).
        model: the model's config (its head counts are read without loading weights).
        refused: config settings this layout cannot combine with -> whether they are set.
    Raises:
        ConfigError: a refused setting, no torchrun, a world size or head count not divisible by `size`.
    """
    if size == 1:
        return dist
    for name, on in (refused or {}).items():
        if on:
            raise ConfigError(f"{key}={size} cannot be combined with {name}; set {key}=1 or drop {name}")
    if not dist.launched:
        raise ConfigError(f"{key}={size} splits each sequence over {size} ranks: launch the command with "
                          f"torchrun --nproc_per_node=<a multiple of {size}>, or set {key}=1")
    if dist.world % size:
        raise ConfigError(f"{key}={size} does not divide the {dist.world} ranks torchrun started "
                          f"(world = data parallel x {key})")
    shape = architecture(model)
    check_heads(shape.heads, shape.kv_heads, size, key)
    if (dist.world, size) not in _MESHES:               # made once per process and layout (every rank takes part)
        from torch.distributed.device_mesh import init_device_mesh  # lazy: only sequence-parallel runs need it

        _MESHES[(dist.world, size)] = init_device_mesh(dist.device.type, (dist.world // size, size),
                                                       mesh_dim_names=("dp", "sp"))
    return dataclasses.replace(dist, sp=size)


def group_of(dist: Dist) -> SequenceParallel | None:
    """This rank's sequence-parallel group (after `init`), or None when sequence parallelism is off."""
    if dist.sp == 1:
        return None
    mesh = _MESHES[(dist.world, dist.sp)]
    return SequenceParallel(mesh.get_group("sp"), dist.sp, dist.rank % dist.sp)


def attach(model, sp: SequenceParallel | None) -> None:
    """Make longrl's training forwards of `model` (log-probs, NLL) split their sequences over `sp`."""
    if sp is None:
        _ATTACHED.pop(model, None)
        return
    config = model.config
    check_heads(config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
                sp.size, "sequence_parallel")
    _ATTACHED[model] = sp


def attached(model) -> SequenceParallel | None:
    """The group `model`'s forwards split sequences over, or None."""
    return _ATTACHED.get(model)
