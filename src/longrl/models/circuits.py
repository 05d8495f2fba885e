"""A retrieval circuit written into the tiny model's initial weights (`architecture.init: retrieval`).

    model = build_tiny_model(TinyArchConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                            num_key_value_heads=2, rope_theta=1e8, init="retrieval"), tokenizer)

Why: a 2-layer model has to grow a whole induction circuit at once (a previous-token head, a layer-1
head whose keys read it, a copying output) before looking a fact up lowers its loss, and on the
2-core machine no recipe got there (README, "The tiny base model", has every probe). The method
starts RL from a model that already reads short documents (R1-Distill), so the embedded default
starts from weights that already hold the circuit, and `longrl pretrain` trains everything else
(the answer format, copying the question's keys, arithmetic, the option letters) on top of it,
with every weight trainable. The model stays a plain `Qwen2ForCausalLM`.

The circuit (H = hidden size, d = head dimension; the residual stream is split in three):

- T = dims [0, H/2): token embeddings (tied, zero outside T), whose first n dims are the token's
  code (rescaled to one norm for every token); A = [H/2, 3H/4) and B = [3H/4, H): the code of the
  token 1 back and 2 back. n is the number of slow RoPE pairs per matched half (17 for d = 64).
- Layer 0, heads 0 and 1: positional heads. With W_q = W_k = 0, the scores come from the q/k
  biases alone, and RoPE turns them into a function of the offset, sum_f a^2 cos(theta_f (D - k)),
  peaked at D = k (k = 1, 2). Their value/output maps write the attended token's code into A / B.
  The layer's MLP starts at zero output.
- Layer 1, head 0: a bigram induction head. Its score matches (token i-1, token i) of the query
  position with (token j-2, token j-1) of the key position, in the slowest RoPE pairs (they turn
  < 0.5 rad across `SPAN` tokens, so the match holds at any distance); its output copies token j.
  At "The mentor of Bako is" it attends to the token after "Bako is" in the document: the value.
  A sink keeps it quiet where nothing matches: the key of `<|im_start|>` (every prompt's first
  token) is a direction no other embedding has, and the value map removes it; the chat template's
  own tokens have no code.
  Head 1 and the layer's MLP start at zero output (random inputs, zero output projection, so they
  train from there); the final norm scales T by `NORM_GAIN`.

Everything else keeps the seeded random init. Scores are set so a full match (`MATCH`) beats the
sink (`SINK`), which beats a half match: at init, 98-100% of the looked-up values of held-out
`lookup` items (176-384 tokens) are predicted right under teacher forcing (tests/models/test_circuits.py).
"""

from __future__ import annotations

import math

import torch

AMPLITUDE = 10.0   # q/k bias per RoPE pair of the positional heads (peak-to-neighbour score gap ~ 0.085 a^2)
MATCH = 12.0       # attention logit of each matched half (token i-1 <-> j-2, token i <-> j-1)
SINK = 16.0        # attention logit of the sink: above one matched half, below both
COPY = 3.0         # size of the copied token relative to a typical embedding
NORM_GAIN = 5.0    # final-norm weight on T: logits ~ 5x the default init's
SPAN = 2048        # tokens over which the induction head's RoPE pairs must stay nearly aligned


def slow_pairs(head_dim: int, rope_theta: float, span: int = SPAN) -> list[int]:
    """RoPE pair indices f whose angle theta_f * span stays within 0.5 rad."""
    inv = rope_theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    return [f for f in range(head_dim // 2) if float(inv[f]) * span <= 0.5]


def check_shape(config) -> None:
    """Raise ValueError when the model cannot hold the circuit."""
    heads, hidden = config.num_attention_heads, config.hidden_size
    head_dim = hidden // heads
    problems = []
    if config.num_hidden_layers < 2:
        problems.append("at least 2 layers")
    if heads != 2 or config.num_key_value_heads != 2 or hidden % 4:
        problems.append("2 attention heads and 2 key/value heads per layer, hidden_size a multiple of 4")
    theta = config.rope_parameters["rope_theta"]
    if len(slow_pairs(head_dim, theta)) < 8:
        problems.append(f"8+ RoPE pairs slow enough to match across {SPAN} tokens (raise rope_theta, e.g. 1e8)")
    if not config.tie_word_embeddings:
        problems.append("tied embeddings")
    if problems:
        raise ValueError("the retrieval circuit needs " + "; ".join(problems))


@torch.no_grad()
def init_retrieval_circuit(model, tokenizer, seed: int = 0) -> None:
    """Write the circuit described above into `model` (a random-init Qwen2ForCausalLM), in place.

    The sink is the chat template's first token; the tokens of the template's frame around a user
    turn (the markers, "assistant", the newlines) get no code, so they neither match nor disturb a match.
    """
    cfg = model.config
    check_shape(cfg)
    hidden, heads = cfg.hidden_size, cfg.num_attention_heads
    d = hidden // heads
    half = d // 2
    t, a, b = slice(0, hidden // 2), slice(hidden // 2, 3 * hidden // 4), slice(3 * hidden // 4, hidden)
    gen = torch.Generator().manual_seed(seed)
    theta = cfg.rope_parameters["rope_theta"]
    inv = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    slow = slow_pairs(d, theta)
    dims = [f for f in slow] + [f + half for f in slow]          # the induction head's RoPE dims, slowest last
    sink_dim, dims = dims[-1], dims[:-1]
    n = min(len(dims) // 2, hidden // 4)                          # code size: one slow dim per code dim and term
    first, second = dims[:n], dims[n:2 * n]
    layer0, layer1 = model.model.layers[0], model.model.layers[1]

    # Embeddings live in T. A token's code is its first n dims, rescaled so every token's code has the
    # same norm (a match then scores the same for every name); the sink token alone points along `sink_dir`.
    embed = model.model.embed_tokens.weight
    typical = float(embed[:, t].norm(dim=1).mean())
    embed[:, hidden // 2:] = 0
    code_norm = typical * math.sqrt(n / (hidden // 2))
    rest_norm = math.sqrt(typical ** 2 - code_norm ** 2)
    sink_dir = torch.zeros(hidden // 2)
    sink_dir[n:] = torch.randn(hidden // 2 - n, generator=gen)
    sink_dir /= sink_dir.norm()
    codes, rest = embed[:, :n], embed[:, n:hidden // 2]
    rest -= (rest @ sink_dir[n:])[:, None] * sink_dir[None, n:]
    codes *= code_norm / codes.norm(dim=1, keepdim=True).clamp_min(1e-12)    # the padding row stays zero
    rest *= rest_norm / rest.norm(dim=1, keepdim=True).clamp_min(1e-12)
    frame = tokenizer.apply_chat_template([{"role": "user", "content": "\x00"}], tokenize=False, add_generation_prompt=True)
    quiet = sorted({i for part in frame.split("\x00") for i in tokenizer.encode(part, add_special_tokens=False)})
    sink_token_id = tokenizer.encode(frame, add_special_tokens=False)[0]
    codes[quiet] = 0
    embed[sink_token_id, t] = typical * sink_dir

    # Layer 0: positional heads at offsets 1 and 2, copying the attended token's code into A and B.
    att0 = layer0.self_attn
    for proj in (att0.q_proj, att0.k_proj, att0.v_proj):
        proj.weight.zero_()
        proj.bias.zero_()
    att0.o_proj.weight.zero_()
    for head, (offset, target) in enumerate(((1, a), (2, b))):
        rows = slice(head * d, (head + 1) * d)
        q_bias = torch.zeros(d, dtype=torch.float64)
        k_bias = torch.zeros(d, dtype=torch.float64)
        q_bias[:half] = AMPLITUDE
        k_bias[:half] = AMPLITUDE * torch.cos(inv * offset)
        k_bias[half:] = AMPLITUDE * torch.sin(inv * offset)
        att0.q_proj.bias[rows] = q_bias.float()
        att0.k_proj.bias[rows] = k_bias.float()
        att0.v_proj.weight[head * d:head * d + n, :n] = torch.eye(n)          # reads the code (x̂ = x * sqrt(H) / |x|)
        start = target.start
        att0.o_proj.weight[start:start + n, head * d:head * d + n] = (typical / math.sqrt(hidden)) * torch.eye(n)
    layer0.mlp.down_proj.weight.zero_()

    # Layer 1, head 0: match (i-1, i) against (j-2, j-1) in the slow RoPE dims, copy token j.
    att1 = layer1.self_attn
    for proj in (att1.q_proj, att1.k_proj, att1.v_proj):
        proj.weight[:d] = 0
        proj.bias[:d] = 0
    norm1 = math.sqrt(hidden) / math.sqrt(typical ** 2 + 2 * code_norm ** 2)   # layer 1's RMSNorm factor
    gain = MATCH * math.sqrt(d) / (norm1 * code_norm) ** 2
    for r in range(n):
        att1.q_proj.weight[first[r], a.start + r] = gain       # code of token i-1 (A at i)
        att1.k_proj.weight[first[r], b.start + r] = 1.0        # code of token j-2 (B at j)
        att1.q_proj.weight[second[r], r] = gain                # code of token i (T at i)
        att1.k_proj.weight[second[r], a.start + r] = 1.0       # code of token j-1 (A at j)
    att1.k_proj.weight[sink_dim, t] = sink_dir / (norm1 * typical)
    att1.q_proj.bias[sink_dim] = SINK * math.sqrt(d)
    att1.v_proj.weight[:hidden // 2, t] = torch.eye(hidden // 2) - torch.outer(sink_dir, sink_dir)
    att1.o_proj.weight.zero_()                       # head 1 starts silent too (its q/k/v stay random, so it trains)
    att1.o_proj.weight[t, :hidden // 2] = (COPY / norm1) * torch.eye(hidden // 2)
    layer1.mlp.down_proj.weight.zero_()
    model.model.norm.weight[t] = NORM_GAIN
    model.model.norm.weight[hidden // 2:] = 0
