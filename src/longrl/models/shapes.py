"""Architecture numbers of a model, read without loading its weights (for the memory planner).

    shape = architecture(cfg.model)      # Shape(vocab=152064, hidden=5120, layers=48, ...)
    shape.params                          # 14.8e9 for R1-Distill-Qwen-14B

A local folder, `builtin:NAME` or `random` is read from its config.json (or `model.tiny`); a hub
name is read from the local Hugging Face cache when it is there, else from `KNOWN` below: the
published configurations of the models longrl's recipes start from (nothing is downloaded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from longrl.config.model import ModelConfig, TinyArchConfig
from longrl.errors import ConfigError
from longrl.models.packaged import PACKAGED, cached_folder

# Published config.json values (hidden, layers, heads, kv heads, intermediate, vocab, tied embeddings).
KNOWN: dict[str, dict] = {
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": dict(vocab=151936, hidden=1536, layers=28, heads=12, kv_heads=2,
                                                      intermediate=8960, tied=False),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": dict(vocab=152064, hidden=3584, layers=28, heads=28, kv_heads=4,
                                                    intermediate=18944, tied=False),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": dict(vocab=152064, hidden=5120, layers=48, heads=40, kv_heads=8,
                                                     intermediate=13824, tied=False),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": dict(vocab=152064, hidden=5120, layers=64, heads=40, kv_heads=8,
                                                     intermediate=27648, tied=False),
    "Qwen/Qwen2.5-0.5B-Instruct": dict(vocab=151936, hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864,
                                       tied=True),
    "Qwen/Qwen2.5-1.5B-Instruct": dict(vocab=151936, hidden=1536, layers=28, heads=12, kv_heads=2, intermediate=8960,
                                       tied=True),
    # the `real` extra's model, before its first use has written the folder (the planner builds nothing)
    "builtin:smollm2-135m": dict(vocab=49152, hidden=576, layers=30, heads=9, kv_heads=3, intermediate=1536, tied=True,
                                 qkv_bias=False),
}


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    tied: bool
    qkv_bias: bool = True          # Qwen2 has q/k/v biases

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv(self) -> int:
        """Width of one token's keys (= of its values) in a layer."""
        return self.kv_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        h, kv = self.hidden, self.kv
        attention = 2 * h * h + 2 * h * kv + ((h + 2 * kv) if self.qkv_bias else 0)
        return attention + 3 * h * self.intermediate + 2 * h

    @property
    def root_params(self) -> int:
        """Embeddings, final norm and (untied) LM head: the weights outside the decoder blocks."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.root_params


def from_hf_config(config) -> Shape:
    heads = config.num_attention_heads
    return Shape(vocab=config.vocab_size, hidden=config.hidden_size, layers=config.num_hidden_layers, heads=heads,
                 kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                 intermediate=config.intermediate_size, tied=bool(getattr(config, "tie_word_embeddings", False)),
                 qkv_bias=bool(getattr(config, "attention_bias", config.model_type == "qwen2")))


def architecture(cfg: ModelConfig) -> Shape:
    """The Shape of `cfg.path` (config.json, `model.tiny`, or the KNOWN table for hub names not cached)."""
    from longrl.models.loading import RANDOM, load_tokenizer, resolve_path  # lazy: loading imports transformers

    if cfg.path == RANDOM:                   # the config training builds the random model from
        from longrl.models.tiny import tiny_model_config  # lazy: as above

        return from_hf_config(tiny_model_config(cfg.tiny or TinyArchConfig(), load_tokenizer(cfg)))
    from transformers import AutoConfig  # lazy: transformers is slow to import

    short = cfg.path.removeprefix("builtin:")
    if cfg.path.startswith("builtin:") and short in PACKAGED and cached_folder(short) is None:
        return Shape(**KNOWN[cfg.path])   # not made yet: its published shape, without a minute of dequantizing
    path = resolve_path(cfg.path)
    try:                                # a hub name: the local cache only (the planner downloads nothing)
        return from_hf_config(AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code,
                                                         local_files_only=not Path(path).exists()))
    except (OSError, ValueError) as exc:
        if cfg.path in KNOWN:
            return Shape(**KNOWN[cfg.path])
        raise ConfigError(f"cannot read the architecture of {cfg.path!r} offline ({exc}); point model.path at a "
                          f"local folder with its config.json (known without one: {', '.join(sorted(KNOWN))})") from None


def context_length(cfg: ModelConfig) -> int | None:
    """The context window `cfg` gives the model: `model.max_position_embeddings`, else its config's (read offline:
    a local folder, `builtin:`, `random`, or the Hugging Face cache); None when that cannot be read."""
    from longrl.models.loading import RANDOM, resolve_path  # lazy: loading imports transformers

    if cfg.max_position_embeddings:
        return cfg.max_position_embeddings
    if cfg.path == RANDOM:
        return (cfg.tiny or TinyArchConfig()).max_position_embeddings
    from transformers import AutoConfig  # lazy: transformers is slow to import

    try:
        path = resolve_path(cfg.path)
        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code,
                                            local_files_only=not Path(path).exists())
    except (OSError, ValueError, ConfigError):
        return None
    value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None
