"""Per-token negative log-likelihood of packed rows, the LM head chunked (SFT and pretraining).

    with packed_attention(model):                       # longrl.engine.packed
        with autocast(model, enabled=cfg.sft.bf16_autocast):
            nll = token_nll(model, batch)                # (N,) one value per labelled token

`batch` is any object with `input_ids`, `position_ids`, `labels` (R, T) tensors and `segments`
(per row, the lengths of its packed examples), such as `longrl.sft.packing.PackedBatch`; positions
labelled `IGNORE` carry no target. With a sequence-parallel group attached to the model
(`engine/ulysses.py`, `sft.sequence_parallel` > 1) each rank runs its block of every row's positions
(global positions, the segments unchanged) and the per-token NLL is gathered: every rank of the
group returns the whole (N,) result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as recompute

from longrl.engine.logprobs import output_head
from longrl.engine.packed import segment_kwargs
from longrl.engine.sharding import run_forward
from longrl.engine.ulysses import attached

IGNORE = -100  # label of positions without a target


def _chunk_nll(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(F.linear(hidden, weight, bias).float(), targets, reduction="none")


def token_nll(model, batch, logits_chunk_mb: float = 256.0) -> torch.Tensor:
    """Negative log-likelihood of every labelled token of a packed batch, in row-major order.

    The LM head runs only on labelled positions, `logits_chunk_mb` of fp32 logits at a time; with
    more than one chunk each chunk's logits are recomputed in backward (activation checkpointing),
    so [tokens x vocab] logits never exist at once.

    Args:
        model: a Hugging Face causal LM whose attention goes through AttentionInterface, inside
            `packed_attention(model)`.
        batch: packed rows.        # input_ids, position_ids, labels: (R, T); segments: lengths per row
        logits_chunk_mb: size of one chunk of logits.

    A model prepared by `engine.sharding.prepare` runs this as one of its forwards (FSDP gathers when
    sharded, autocast for one-device mixed precision).
    Returns:
        (N,) float32 NLL in nats, N = the number of labels that are not IGNORE.
    """
    return run_forward(model, _token_nll, batch, logits_chunk_mb)


def _token_nll(model, batch, logits_chunk_mb: float) -> torch.Tensor:
    device = model.get_input_embeddings().weight.device
    ids, positions, labels = batch.input_ids.to(device), batch.position_ids.to(device), batch.labels.to(device)
    head = output_head(model, allow_bias=True)
    if (sp := attached(model)) is not None:       # sequence parallel: this rank's block of columns, then gathered
        hidden = model.base_model(input_ids=sp.columns(ids), position_ids=sp.columns(positions), use_cache=False,
                                  **segment_kwargs(batch.segments), **sp.forward_kwargs()).last_hidden_state
        local = sp.columns(labels, pad_value=IGNORE)
        keep = local != IGNORE
        nll = _head_nll(hidden[keep], local[keep], head, logits_chunk_mb)
        full = sp.gather(torch.zeros(keep.shape, dtype=nll.dtype, device=device).masked_scatter(keep, nll))
        return full[:, :labels.shape[1]][labels != IGNORE]
    hidden = model.base_model(input_ids=ids, position_ids=positions, use_cache=False,
                              **segment_kwargs(batch.segments)).last_hidden_state                  # (R, T, H)
    keep = labels != IGNORE
    return _head_nll(hidden[keep], labels[keep], head, logits_chunk_mb)                         # (N, H), (N,)


def _head_nll(hidden: torch.Tensor, targets: torch.Tensor, head, logits_chunk_mb: float) -> torch.Tensor:
    rows = max(1, int(logits_chunk_mb * 2**20 // (4 * head.weight.shape[0])))
    if hidden.shape[0] <= rows:
        return _chunk_nll(hidden, head.weight, head.bias, targets)
    parts = [recompute(_chunk_nll, hidden[s:s + rows], head.weight, head.bias, targets[s:s + rows], use_reentrant=False)
             for s in range(0, hidden.shape[0], rows)]
    return torch.cat(parts)


def autocast(model, enabled: bool):
    """bfloat16 autocast on the model's device (matmuls in bf16: AMX CPUs and GPUs run them several times faster)."""
    return torch.autocast(model.get_input_embeddings().weight.device.type, dtype=torch.bfloat16, enabled=enabled)
