"""The memory a training phase needs per GPU, estimated before launching it (`longrl plan`).

    layout = Layout(gpus=8, compute="bf16")                 # FSDP2 across 8 ranks, bf16 math
    step = train_memory(shape, layout, prompt_tokens=20000, completion_tokens=12000, group_size=8,
                        checkpointing=True, chunk_tokens=1024, reference=False)
    step.total, step.parts                                  # bytes; {"weights": ..., "activations": ...}
    roll = rollout_memory(shape, layout, prompt_len=20000, response_len=10000, group_size=8, groups=1)

Every figure is bytes on one GPU, computed from the architecture (`models.shapes.Shape`) and
the settings, for the code paths longrl runs:

  weights     fp32 master weights (sharded 1/N under FSDP)
  compute copies  the bf16 weights the math reads: autocast's cast weights on one device; under FSDP
              the gathered embeddings/head (FSDP's root stays gathered), two gathered decoder blocks
              (in use + prefetched), the head's gathered gradient and one block's
  grads       fp32 gradients (sharded)
  optimizer   AdamW's two fp32 moments (sharded)
  reference   the frozen reference policy (fp32, sharded), when KL is computed
  activations what the backward keeps per token of a micro-batch: a full decoder block per token
              without checkpointing, only each block's input (and the prompt's kept K,V) with it,
              plus one block recomputed; completion tokens of the shared-prompt forward cost more
              than prompt tokens (their cascade attention keeps its partial results)
  log-prob chunk  the LM head's logits for `chunk_tokens` rows, recomputed in the backward
  attention   score blocks of the cascade attention (capped by engine.attention.SCORE_BUDGET)
  rollout KV  the prompt's keys and values once per group plus G suffix buffers of the response limit
  rollout weights  the full weights sampling reads (the twin under FSDP, autocast's copies on one device)
  all-to-all  Ulysses sequence parallelism (`Layout.sp` ranks split each sequence): the send and receive
              buffers of a block's q, k, v and attention output, in the forward and again in the backward

Sequence parallelism divides a micro-batch's tokens, hence its activations, by `sp`; attention then
runs over the whole sequence for heads / sp heads. The model states stay sharded over the whole world
(FSDP2 across data- and sequence-parallel ranks alike). CPU offload (`train.offload`) takes the fp32
weights, gradients, AdamW moments and reference off the GPU (`host_states`: where they go); the gathered
layers and the copies FSDP2 stages through the GPU stay. AdamW's moments offloaded alone visit the GPU for
the optimizer step: that moment (weights, gradients, moments) is planned too.

The per-token activation coefficients were measured on this code (tensors saved for backward,
CPU, three precisions) and are checked against measured peaks by tests/engine/test_memory.py
(within 25%) and, on a GPU, by `longrl bench memory --device cuda` (benchmarks/gpu_check.sh).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from longrl.engine.attention import SCORE_BUDGET
from longrl.models.shapes import Shape

GiB = 1 << 30          # the planner's unit: binary gigabytes (a GPU's "80 GB" is 80 GiB of HBM)

# Bytes per token (coefficients of hidden, kv width, intermediate) that a micro-batch's backward keeps,
# by precision: fp32 = fp32 weights and math (one device); autocast = fp32 weights, bf16 autocast math
# (one device); bf16 = FSDP's bf16 mixed precision (gathered bf16 weights, bf16 math).
#   prompt_full      a prompt token in a decoder block whose outputs feed the next block
#   prompt_last      a prompt token in the last block (only its K,V feed the completions)
#   completion       a completion token in a decoder block (cascade attention's partial results included)
#   completion_head  per completion token, once: final norm and the hidden state the LM head reads
#   ckpt_prompt      per prompt token and block with checkpointing: the block input and the kept K,V
#   ckpt_completion  per completion token and block with checkpointing: the block input
#   kv               bytes of one K and one V element in the rollout cache (RoPE'd keys stay fp32 under autocast)
#   element          bytes of an activation element
#   scores           bytes per attention score element in a block's backward (scores, their gradient, a copy)
ACTIVATION_BYTES = {
    "fp32": dict(prompt_full=(30, 20, 16), prompt_last=(16, 4, 0), completion=(52, 0, 16), completion_head=(14.3, 0, 0),
                 ckpt_prompt=(4, 8, 0), ckpt_completion=(4, 0, 0), kv=(4, 4), element=4, scores=12),
    "autocast": dict(prompt_full=(28, 14, 8), prompt_last=(16, 2, 0), completion=(53.5, 0, 8),
                     completion_head=(14.3, 0, 0), ckpt_prompt=(4, 6, 0), ckpt_completion=(4, 0, 0), kv=(4, 2), element=2, scores=7),
    "bf16": dict(prompt_full=(21, 6, 8), prompt_last=(8, 6, 0), completion=(35, 3.7, 8), completion_head=(9.3, 0, 0),
                 ckpt_prompt=(2, 4, 0), ckpt_completion=(2, 0, 0), kv=(2, 2), element=2, scores=10),
}


@dataclass(frozen=True)
class Layout:
    """Where a phase runs: `gpus` ranks computing in `compute`; FSDP2 under torchrun (default: more than one GPU)."""

    gpus: int = 1
    compute: str = "bf16"           # "bf16" or "fp32" math; weights and optimizer are fp32 either way
    fsdp: bool | None = None        # None = torchrun + FSDP2 when gpus > 1 or with offload, one plain process on one GPU
    sp: int = 1                     # Ulysses sequence parallelism: ranks that split each sequence
    offload_params: bool = False    # fp32 weights and gradient shards on the CPU (FSDP2 CPUOffloadPolicy)
    offload_optimizer: bool = False  # AdamW moments on the CPU (with offload_params: the step too)

    @property
    def sharded(self) -> bool:
        if self.fsdp is not None:
            return self.fsdp
        return self.gpus > 1 or self.offload_params or self.offload_optimizer

    @property
    def precision(self) -> str:
        if self.compute == "fp32":
            return "fp32"
        return "bf16" if self.sharded else "autocast"


STATE_PARTS = ("weights", "grads", "optimizer", "reference")


@dataclass
class Estimate:
    """Bytes per GPU, by component; `total` is the peak (the parts that coexist at the worst moment)."""

    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    @property
    def transient(self) -> float:
        """What a step allocates on top of the resident state: activations, chunks, caches, compute copies."""
        return self.total - sum(self.parts.get(k, 0.0) for k in STATE_PARTS)


def _per_token(coef: tuple[float, float, float], shape: Shape) -> float:
    return coef[0] * shape.hidden + coef[1] * shape.kv + coef[2] * shape.intermediate


def states(shape: Shape, layout: Layout, reference: bool, grads: bool = True) -> dict[str, float]:
    """Weights (master + compute copies), gradients, AdamW moments and the reference, per GPU (0 when offloaded)."""
    n, w = shape.params, layout.gpus
    parts = {"weights": 4.0 * n / w, "compute copies": 0.0}
    if layout.precision == "autocast":
        parts["compute copies"] = 2.0 * (n - shape.vocab * shape.hidden * (0 if shape.tied else 1))  # not the embedding
    elif layout.sharded:
        copy = 2 if layout.precision == "bf16" else 4
        parts["compute copies"] = copy * (shape.root_params + 2 * shape.layer_params)    # gathered root + 2 blocks
        if grads:   # the head's gathered gradient (held to the end of backward) and one block's, with its fp32 reduction
            parts["compute copies"] += copy * shape.vocab * shape.hidden + (copy + 4) * shape.layer_params
        if reference:
            parts["compute copies"] += copy * (shape.root_params + 2 * shape.layer_params)
    parts["grads"] = 4.0 * n / w if grads else 0.0
    parts["optimizer"] = 8.0 * n / w
    parts["reference"] = 4.0 * n / w if reference else 0.0
    if layout.offload_params:       # staged through the GPU: the fp32 shards of the gathered layers and their gradients
        staged = shape.root_params + 2 * shape.layer_params
        parts["compute copies"] += 4.0 * staged / w * ((2 if grads else 1) + (1 if reference else 0))
        for part in ("weights", "grads", "reference"):
            parts[part] = 0.0
    if layout.offload_params or layout.offload_optimizer:
        parts["optimizer"] = 0.0
    return parts


def host_states(shape: Shape, layout: Layout, reference: bool) -> float:
    """Bytes of model state one rank keeps in host (CPU) memory because of offload."""
    n, w = shape.params, layout.gpus
    host = 8.0 * n / w if layout.offload_params or layout.offload_optimizer else 0.0
    if layout.offload_params:
        host += 8.0 * n / w + (4.0 * n / w if reference else 0.0)
    return host


def optimizer_step(shape: Shape, layout: Layout, reference: bool) -> Estimate:
    """The optimizer step's moment on the GPU: weights, gradients and AdamW's moments (fetched back when
    offloaded alone); nothing when the parameters are offloaded (the step runs on the CPU)."""
    n, w = shape.params, layout.gpus
    if layout.offload_params:
        return Estimate({})
    return Estimate({"weights": 4.0 * n / w, "grads": 4.0 * n / w, "optimizer": 8.0 * n / w,
                     "reference": 4.0 * n / w if reference else 0.0})


def all_to_all(shape: Shape, layout: Layout, tokens: int) -> float:
    """Ulysses buffers of one block: q, k, v and the output, sent and received, for a rank's `tokens`."""
    if layout.sp == 1:
        return 0.0
    element = ACTIVATION_BYTES[layout.precision]["element"]
    return 2.0 * tokens * (2 * shape.hidden + 2 * shape.kv) * element


def saved_activations(shape: Shape, precision: str, prompt_tokens: int, completion_tokens: int,
                      checkpointing: bool) -> tuple[float, float]:
    """(prompt part, completion part) of what the backward of one micro-batch keeps, in bytes."""
    c = ACTIVATION_BYTES[precision]
    L = shape.layers
    if checkpointing:
        prompt = prompt_tokens * L * _per_token(c["ckpt_prompt"], shape)
        completion = completion_tokens * (L * _per_token(c["ckpt_completion"], shape))
    else:
        prompt = prompt_tokens * ((L - 1) * _per_token(c["prompt_full"], shape) + _per_token(c["prompt_last"], shape))
        completion = completion_tokens * L * _per_token(c["completion"], shape)
    return prompt, completion + completion_tokens * _per_token(c["completion_head"], shape)


def train_memory(shape: Shape, layout: Layout, prompt_tokens: int, completion_tokens: int, prompt_len: int,
                 checkpointing: bool, chunk_tokens: int, reference: bool) -> Estimate:
    """Peak of one micro-batch's forward and backward in the policy update, per GPU.

    Args:
        prompt_tokens: prompt tokens in the micro-batch (each prompt once: the shared-prompt forward).
        completion_tokens: completion tokens in it.
        prompt_len: the longest prompt (its keys are what a completion's attention reads).
        checkpointing: model.gradient_checkpointing.
        chunk_tokens: train.logprob_chunk_tokens.
        reference: a reference policy is loaded (KL).

    The peak is the worst of three moments of the backward: the LM head's (every activation kept, a
    chunk of logits and the head's fp32 gradient), a completion block's (its recomputation with
    checkpointing, its gradients and its attention score blocks) and a prompt block's (the prompt's
    activations, its recomputation and gradients, the embedding gradients).
    """
    c = ACTIVATION_BYTES[layout.precision]
    parts = states(shape, layout, reference)
    prompt_tokens, completion_tokens = per_rank(prompt_tokens, layout), per_rank(completion_tokens, layout)
    prompt, completion = saved_activations(shape, layout.precision, prompt_tokens, completion_tokens, checkpointing)
    rows = min(chunk_tokens, max(completion_tokens, 1))
    vh = shape.vocab * shape.hidden
    head = rows * shape.vocab * 8.0 + vh * 4.0
    scores = c["scores"] * min(shape.heads * completion_tokens * prompt_len, SCORE_BUDGET)
    block_c = completion_tokens * _per_token(c["completion"], shape)
    block_p = prompt_tokens * _per_token(c["prompt_full"], shape)
    recompute_c, recompute_p = (block_c, block_p) if checkpointing else (0.0, 0.0)
    moments = {
        "head": (prompt + completion, {"log-prob chunk": head}),
        "completion block": (prompt + completion, {"recompute": recompute_c, "block gradients": block_c,
                                                   "attention": scores,
                                                   "all-to-all": all_to_all(shape, layout, completion_tokens)}),
        "prompt block": (prompt, {"recompute": recompute_p, "block gradients": block_p, "embedding gradients": 8.0 * vh,
                                  "all-to-all": all_to_all(shape, layout, prompt_tokens)}),
    }
    saved, extra = max(moments.values(), key=lambda m: m[0] + sum(m[1].values()))
    parts.update({"activations": saved, **extra})
    return with_step(Estimate(parts), optimizer_step(shape, layout, reference))


def per_rank(tokens: int, layout: Layout) -> int:
    """A rank's share of a micro-batch's tokens under sequence parallelism (the last share may be shorter)."""
    return -(-tokens // layout.sp)


def with_step(backward: Estimate, step: Estimate) -> Estimate:
    """The backward's parts, plus an "optimizer step" part when that moment (weights, gradients and the moments
    fetched back to the GPU) needs more than the backward's peak: the total is the higher of the two."""
    if step.total > backward.total:
        backward.parts["optimizer step"] = step.total - backward.total
    return backward


def sft_memory(shape: Shape, layout: Layout, tokens: int, label_tokens: int, checkpointing: bool,
               logits_chunk_mb: float) -> Estimate:
    """Peak of one SFT micro-batch (`tokens` packed tokens, `label_tokens` of them with a loss), per GPU."""
    c = ACTIVATION_BYTES[layout.precision]
    parts = states(shape, layout, reference=False)
    tokens, label_tokens = per_rank(tokens, layout), per_rank(label_tokens, layout)
    L = shape.layers
    if checkpointing:
        saved = tokens * L * c["ckpt_completion"][0] * shape.hidden
        block = tokens * _per_token(c["prompt_full"], shape)
    else:
        saved, block = tokens * L * _per_token(c["prompt_full"], shape), 0.0
    saved += label_tokens * _per_token(c["completion_head"], shape)
    rows = min(max(1, int(logits_chunk_mb * 2**20 // (4 * shape.vocab))), max(label_tokens, 1))
    head = rows * shape.vocab * 12.0
    parts.update({"activations": saved, "recompute": block, "all-to-all": all_to_all(shape, layout, tokens),
                  "log-prob chunk": max(head - block, 0.0)})    # the head and a recomputed block come one at a time
    return with_step(Estimate(parts), optimizer_step(shape, layout, reference=False))


def rollout_memory(shape: Shape, layout: Layout, prompt_len: int, response_len: int, group_size: int, groups: int,
                   reference: bool) -> Estimate:
    """Peak of sampling `groups` prompts of `prompt_len` tokens with G responses of up to `response_len`, per GPU.

    The optimizer moments and master weights stay resident (gradients are freed after each update);
    the sampler reads full weights in the compute dtype (the twin under FSDP; autocast's cast copies,
    made block by block, on one device); the cache holds each prompt's K,V once and a preallocated
    suffix buffer per sample. The peak is the prefill (a block's MLP over every prompt token) or
    the decoding (the whole cache, the LM head's copy and a step's logits), whichever is larger.
    """
    c = ACTIVATION_BYTES[layout.precision]
    parts = states(shape, layout, reference, grads=False)
    n = shape.params
    kv_bytes = sum(c["kv"]) * shape.kv * shape.layers
    prompt_kv = groups * kv_bytes * prompt_len
    suffix_kv = groups * kv_bytes * group_size * response_len
    prefill = groups * prompt_len * (3.5 * shape.intermediate * c["element"] + 16 * shape.hidden)
    decode = groups * group_size * shape.vocab * 16.0
    if layout.sharded:
        blocks_copy = all_copy = c["element"] * n                                  # the twin's full weights
    elif layout.precision == "autocast":
        blocks_copy = 2.0 * shape.layers * shape.layer_params
        all_copy = blocks_copy + 2.0 * shape.vocab * shape.hidden                  # + the LM head's copy
    else:
        blocks_copy = all_copy = 0.0
    if prompt_kv + prefill + blocks_copy >= prompt_kv + suffix_kv + decode + all_copy:
        parts.update({"compute copies": blocks_copy, "rollout KV": prompt_kv, "rollout transient": prefill})
    else:
        parts.update({"compute copies": all_copy, "rollout KV": prompt_kv + suffix_kv, "rollout transient": decode})
    return Estimate(parts)
