"""Config section `sft`: demonstrations (`longrl distill`) and warm-up supervised fine-tuning (`longrl sft`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from longrl.config.base import MAX_BATCH_TOKENS, MAX_GROUP_SIZE, MAX_NEW_TOKENS, Section
from longrl.config.data import DataSource
from longrl.config.model import OffloadConfig


class TeacherConfig(Section):
    """A teacher model behind an OpenAI-compatible `POST {base_url}/chat/completions` (vllm serve, SGLang, hosted APIs)."""

    base_url: str                              # e.g. http://127.0.0.1:8000/v1
    model: str                                 # model name sent in the requests (recorded in every demonstration)
    api_key_env: str | None = "LONGRL_TEACHER_API_KEY"  # environment variable holding the key; never logged
    samples: int = Field(4, ge=1, le=MAX_GROUP_SIZE)  # K responses per item; rejection sampling keeps the correct ones
    n_per_request: bool = True                 # one request with n=K; False = K requests of n=1 (servers without `n`)
    keep_per_item: int | None = Field(None, ge=1)  # keep at most this many correct responses per item; None = all
    temperature: float = Field(0.7, ge=0)      # paper's sampling setting
    top_p: float = Field(0.95, gt=0, le=1)     # nucleus sampling; 1 = off
    max_tokens: int = Field(10240, ge=1, le=MAX_NEW_TOKENS)  # response limit per sample (paper: 10K)
    concurrency: int = Field(16, ge=1)         # requests in flight
    timeout_s: float = Field(600.0, gt=0)      # per attempt (long reasoning replies are slow)
    max_attempts: int = Field(4, ge=1)         # tries per request; 429 / 5xx / timeouts / connection errors are retried
    backoff_s: float = Field(1.0, ge=0)        # wait before the 2nd attempt; doubles each attempt (or Retry-After)
    max_backoff_s: float = Field(60.0, ge=0)   # cap on one wait
    max_error_rate: float = Field(0.2, ge=0, le=1)  # failed items / attempted items above this (after 10 items): stop


class SFTConfig(Section):
    data: list[DataSource] = []                # demonstrations (Samples whose meta.trace is the response)
    teacher: TeacherConfig | None = None       # `longrl distill` from a teacher (None = traces only)
    epochs: float = Field(1.0, gt=0)           # passes over the data (fractions allowed)
    steps: int | None = Field(None, ge=1)      # optimizer steps; set = exactly this many, looping over the data
    batch_tokens: int = Field(8192, ge=16, le=MAX_BATCH_TOKENS)  # tokens (prompt + reply) per optimizer step
    micro_batch_tokens: int | None = Field(None, ge=16, le=MAX_BATCH_TOKENS)  # tokens per forward/backward (padded); None = batch_tokens
    row_tokens: int = Field(2048, ge=16, le=MAX_BATCH_TOKENS)  # length of a packed row; a longer example gets a row of its own
    max_seq_tokens: int | None = Field(None, ge=16)  # drop longer demonstrations (counted and reported)
    lr: float = Field(1e-5, gt=0)              # peak learning rate (AdamW)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # cosine / linear decay ends at lr * min_lr_ratio
    weight_decay: float = Field(0.01, ge=0)    # AdamW decoupled weight decay
    grad_clip: float = Field(1.0, gt=0)        # global grad-norm clip
    schedule: Literal["constant", "cosine", "linear"] = "cosine"  # lr after warmup
    warmup_steps: int = Field(0, ge=0)         # linear warmup from lr / (warmup + 1)
    eval_fraction: float = Field(0.05, ge=0, lt=1)  # items held out for the eval loss (all replies of an item together)
    eval_every: int = Field(50, ge=1)          # steps between eval losses (the last step always evaluates)
    logits_chunk_mb: float = Field(256.0, gt=0)  # fp32 logits computed at once (recomputed in backward when chunked)
    sequence_parallel: int = Field(1, ge=1)    # Ulysses SP: ranks that split each packed row (see train.sequence_parallel)
    attention: Literal["auto", "flex", "segments"] = "auto"  # packed-row attention kernel: flex = compiled flex_attention with a document-causal block mask (CUDA), segments = causal SDPA per segment; auto = flex on CUDA, segments on the CPU
    offload: OffloadConfig = OffloadConfig()   # FSDP2 CPU offload of parameters / optimizer state (see train.offload)
    bf16_autocast: bool = False                # forward in bfloat16 autocast (weights stay fp32): 1.2-1.7x on AMX CPUs; GPUs
    long_control: bool = False                 # pipeline: also train "sft-long", SFT continued from the SFT checkpoint on the RL phases' items (their meta.trace) for as many optimizer steps as RL made, and evaluate it: RL's gain net of more training on longer documents

    @model_validator(mode="after")
    def _check_budgets(self) -> SFTConfig:
        if self.micro_batch_tokens is not None and self.micro_batch_tokens > self.batch_tokens:
            raise ValueError("micro_batch_tokens must be <= batch_tokens")
        return self
