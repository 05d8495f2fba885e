"""Config sections for loading a policy (`model`) and for making the tiny base model (`pretrain`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from longrl.config.base import Beta, Section


class TinyArchConfig(Section):
    """Shape of the embedded default: a Qwen2-architecture decoder, random init, seeded."""

    hidden_size: int = Field(256, ge=8)       # width of the residual stream
    num_hidden_layers: int = Field(4, ge=1)   # decoder layers
    num_attention_heads: int = Field(4, ge=1)  # query heads; divides hidden_size
    num_key_value_heads: int = Field(2, ge=1)  # < num_attention_heads = grouped-query attention, as in Qwen2
    intermediate_size: int = Field(768, ge=8)  # width of the SwiGLU MLP
    max_position_embeddings: int = Field(32768, ge=16)  # context window in tokens
    rope_theta: float = Field(10000.0, gt=0)  # RoPE base frequency
    tie_word_embeddings: bool = True          # the LM head shares the input embedding matrix
    init_seed: int = 0                        # seed of the random initialisation
    init: Literal["random", "retrieval"] = "random"  # "retrieval": write a bigram induction circuit into the initial weights (models/circuits.py)

    @model_validator(mode="after")
    def _check_heads(self) -> TinyArchConfig:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        return self


class LoraSettings(Section):
    """LoRA adapters (`peft`, optional): only they train; the base model stays frozen (models/lora.py)."""

    rank: int = Field(16, ge=1)               # r: rank of each update matrix (verl lora_rank, TRL LoraConfig.r)
    alpha: float = Field(32.0, gt=0)          # lora_alpha: the update is scaled by alpha / rank
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # layer names that get adapters (Qwen/Llama linear layers)
    dropout: float = Field(0.0, ge=0, lt=1)   # lora_dropout on the adapter input (training only)
    final: Literal["merged", "adapter"] = "merged"  # DIR/final: weights with the adapters merged in, or the PEFT adapter folder

    @model_validator(mode="after")
    def _check_targets(self) -> LoraSettings:
        if not self.target_modules:
            raise ValueError("target_modules must name at least one layer (e.g. [q_proj, v_proj])")
        return self


class OffloadConfig(Section):
    """FSDP2 CPU offload under torchrun: what stays in host memory between uses (official 32B script: both)."""

    params: bool = False                      # parameter and gradient shards live on the CPU (FSDP2 CPUOffloadPolicy); each layer is copied in for its forward/backward; needs optimizer=true
    optimizer: bool = False                   # AdamW moments live on the CPU (with params: the step runs there; without: they visit the GPU for each step)

    @model_validator(mode="after")
    def _check_pair(self) -> OffloadConfig:
        if self.params and not self.optimizer:
            raise ValueError("params=true keeps the parameter and gradient shards on the CPU, so AdamW's state and "
                             "step are there too: set optimizer=true as well")
        return self


class ModelConfig(Section):
    path: str = "builtin:tiny-base"           # HF hub name, local folder, builtin:NAME (tiny-base; smollm2-135m: the `real` extra), or "random" (tiny, below)
    tokenizer: str | None = None              # tokenizer location; None = same as `path`
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"  # weights and compute dtype
    attn_implementation: str = "sdpa"         # sdpa | eager | flash_attention_2 | ... (transformers names)
    rope_scaling: dict[str, Any] | None = None  # e.g. {rope_type: yarn, factor: 4.0, original_max_position_embeddings: 32768}
    max_position_embeddings: int | None = Field(None, ge=1)  # override the model's context window
    trust_remote_code: bool = False           # never needed for longrl's own models
    gradient_checkpointing: bool = False      # recompute layer activations in backward (long prompts)
    tiny: TinyArchConfig | None = None        # shape of the random-init model when path is "random" (None = defaults)
    lora: LoraSettings | None = None          # train LoRA adapters instead of every weight (SFT and RL); None = full fine-tuning

    @model_validator(mode="after")
    def _check_random(self) -> ModelConfig:
        if self.path == "random" and (self.rope_scaling or self.max_position_embeddings):
            raise ValueError("rope_scaling and max_position_embeddings apply to a loaded model, not path=random "
                             "(they would be ignored); shape the random model with model.tiny")
        return self


class TokenizerBuildConfig(Section):
    """Byte-level BPE trained on the synthetic corpus (Qwen2 pre-tokenizer split pattern)."""

    vocab_size: int = Field(2048, ge=300)     # includes the 256 byte symbols and the special tokens
    corpus_samples: int = Field(600, ge=10)   # synthetic documents the merges are learnt from
    corpus_seed: int = 1234                   # seed of the corpus documents


class PretrainConfig(Section):
    """`longrl pretrain`: make the tiny base model that already reasons over short documents."""

    architecture: TinyArchConfig = TinyArchConfig()
    init_from: str | None = None              # start from this model folder (e.g. an earlier run's final) instead of random init
    tokenizer: TokenizerBuildConfig = TokenizerBuildConfig()
    tasks: list[str] = ["docmath", "multihop", "choice"]  # synthetic task families trained on
    min_length: int = Field(128, ge=32)       # prompt length range of the training documents, in tokens
    max_length: int = Field(384, ge=32)       # upper end of that range
    hops: int | None = Field(None, ge=1)      # reasoning hops of the training items; None = each family's default
    distractors: int | None = Field(None, ge=0)  # decoy facts; None = grows with document length
    steps: int = Field(2000, ge=1)            # optimizer steps
    batch_tokens: int = Field(8192, ge=64)    # tokens per optimizer step (packed)
    micro_batch_tokens: int | None = Field(None, ge=64)  # tokens per forward/backward; None = batch_tokens
    row_tokens: int = Field(2048, ge=64)      # length of a packed row
    lr: float = Field(2e-3, gt=0)             # peak learning rate (AdamW)
    other_token_weight: float = Field(1.0, ge=0, le=1)  # loss weight of reply tokens that are not gold-answer values (1 = plain SFT loss; < 1 focuses it on retrieval)
    schedule: Literal["constant", "cosine", "linear"] = "cosine"  # lr after warmup
    min_lr_ratio: float = Field(0.1, ge=0, le=1)  # decay ends at lr * min_lr_ratio
    warmup_steps: int = Field(100, ge=0)      # steps of linear warmup
    weight_decay: float = Field(0.01, ge=0)   # AdamW decoupled weight decay
    betas: tuple[Beta, Beta] = (0.9, 0.999)  # AdamW moment decay rates
    grad_clip: float = Field(1.0, gt=0)       # global grad-norm clip
    logits_chunk_mb: float = Field(256.0, gt=0)  # fp32 logits computed at once (see sft.logits_chunk_mb)
    bf16_autocast: bool = False               # forward in bfloat16 autocast (see sft.bf16_autocast); slow on CPUs without AMX
    eval_items: int = Field(200, ge=0)        # held-out items scored at the end (greedy), spread over eval_lengths
    eval_lengths: list[int] = []              # prompt lengths of the held-out items; [] = 4 spread over [min_length, max_length]
    value_items: int = Field(40, ge=0)        # held-out lookup items (8 look-ups, 176-384 tokens) for teacher-forced value accuracy
    eval_every: int = Field(200, ge=1)        # steps between held-out losses (the last step always evaluates)
    eval_max_new_tokens: int = Field(96, ge=1)  # greedy reply limit when scoring
    eval_batch_size: int = Field(16, ge=1)    # prompts decoded together when scoring
    save_every: int = Field(200, ge=1)        # steps between checkpoints (the last step always saves)
    dtype_on_save: Literal["float32", "bfloat16"] = "bfloat16"  # bf16 keeps the shipped artifact small

    @model_validator(mode="after")
    def _check_lengths(self) -> PretrainConfig:
        if self.min_length > self.max_length:
            raise ValueError("min_length must be <= max_length")
        if any(length < 32 for length in self.eval_lengths):
            raise ValueError("eval_lengths must be >= 32 tokens")
        if self.micro_batch_tokens is not None and self.micro_batch_tokens > self.batch_tokens:
            raise ValueError("micro_batch_tokens must be <= batch_tokens")
        return self
