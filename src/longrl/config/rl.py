"""Config sections of the RL engine: `rollout`, `algo`, `optim`, `train`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from longrl.config.model import OffloadConfig
from longrl.config.base import (
    MAX_BATCH,
    MAX_BATCH_TOKENS,
    MAX_GROUP_SIZE,
    MAX_INPUT_TOKENS,
    MAX_NEW_TOKENS,
    MAX_PROMPTS,
    Beta,
    Section,
)


class RolloutServerConfig(Section):
    """An OpenAI-compatible server (SGLang, `vllm serve`, `longrl serve`) that rolls out the policy."""

    base_url: str = Field(pattern=r"^https?://")  # its OpenAI API root, e.g. http://127.0.0.1:30000/v1
    model_name: str | None = None              # served model name; None = the first one GET /models lists
    reload_api: Literal["sglang", "vllm"] = "sglang"  # weight reload protocol (`longrl serve` speaks sglang's)
    weights_dir: str | None = None             # where the trainer writes weights for the server to load (same path on both); None = <run>/served
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # dtype of the handed-over weights: the one the server serves (auto = the training compute dtype, model.dtype)
    shard_mb: int = Field(4096, ge=1)          # largest safetensors file of a hand-over; more weights = model-0000i-of-0000n files + index
    api_key_env: str | None = "LONGRL_API_KEY"  # environment variable holding the API key (unset: none sent)
    concurrency: int = Field(64, ge=1)         # requests in flight (one per prompt, n = group_size)
    timeout_s: float = Field(600.0, gt=0)      # per attempt (a rollout request or a reload)
    max_attempts: int = Field(3, ge=1)         # tries per request; 429 / 5xx / timeouts / dropped connections are retried
    backoff_s: float = Field(1.0, ge=0)        # wait before the 2nd attempt; doubles each attempt
    logprobs: bool = False                     # ask for the sampled tokens' log-probs (`logprobs: 0`; vLLM: run it with --logprobs-mode processed_logprobs); the trainer recomputes its own either way


class ValidationSamplingConfig(Section):
    """How held-out items (`data.eval`) are sampled during RL (official script: n 1, T 0.7, top-p 0.95)."""

    n: int = Field(1, ge=1, le=MAX_GROUP_SIZE)  # samples per item; accuracy averages them
    temperature: float = Field(0.7, ge=0)      # 0 = greedy
    top_p: float = Field(0.95, gt=0, le=1)     # nucleus sampling; 1 = off
    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)  # None = the rollout's (the phase's) response limit


class RolloutConfig(Section):
    group_size: int = Field(8, ge=1, le=MAX_GROUP_SIZE)  # G samples per prompt (paper: 8)
    max_new_tokens: int = Field(64, ge=1, le=MAX_NEW_TOKENS)  # response limit (paper: 10K)
    max_input_tokens: int | None = Field(None, ge=16, le=MAX_INPUT_TOKENS)  # prompt budget; longer documents are middle-truncated
    temperature: float = Field(0.7, ge=0)      # paper: 0.7; 0 = greedy
    top_p: float = Field(0.95, gt=0, le=1)     # paper: 0.95
    top_k: int = Field(0, ge=0)                # 0 = off
    groups_per_batch: int = Field(8, ge=1, le=MAX_BATCH)  # prompts decoded together (each with its G samples)
    decode: Literal["auto", "dynamic", "static", "graph"] = "auto"  # engine decode path: auto = static + CUDA graph on CUDA, dynamic on CPU
    backend: Literal["engine", "server"] = "engine"  # engine = in-process generator; server = an OpenAI-compatible server (rollout.server)
    server: RolloutServerConfig | None = None  # the server holding the policy when backend is "server"
    validation: ValidationSamplingConfig = ValidationSamplingConfig()  # sampling of `data.eval` during RL

    @model_validator(mode="after")
    def _check_backend(self) -> RolloutConfig:
        if self.backend == "server" and self.server is None:
            raise ValueError("rollout.backend=server needs rollout.server: {base_url: http://HOST:PORT/v1}")
        return self


class AlgoConfig(Section):
    advantage: str = "grpo"                    # ADVANTAGES key: grpo | drgrpo (no std normalisation; pair with loss_agg seq-mean-token-sum-norm)
    adv_eps: float = Field(1e-6, gt=0)         # (r - mean) / (std + eps)
    clip_eps_low: float = Field(0.2, ge=0)     # PPO clip: ratio >= 1 - clip_eps_low
    clip_eps_high: float = Field(0.28, ge=0)   # DAPO clip-higher; == clip_eps_low gives the PPO clip
    loss_agg: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = "token-mean"  # DAPO | GRPO | Dr. GRPO (constant normaliser: the response limit)
    kl_coef: float = Field(0.0, ge=0)          # 0 = no KL term (paper)
    kl_estimator: Literal["k1", "k3"] = "k3"   # k3 = low_var_kl
    track_kl: bool = False                     # compute KL to the reference for metrics even at kl_coef 0
    entropy_coef: float = Field(0.0, ge=0)     # entropy bonus (paper: 0.001)
    dynamic_sampling: bool = True              # DAPO: drop groups whose `filter_metric` is all equal, refill
    filter_metric: Literal["accuracy", "reward"] = "accuracy"  # what must vary in a group: accuracy = 0 < #correct < G (DAPO's acc); reward = the shaped reward
    max_refills: int = Field(2, ge=0)          # extra generation rounds per step (verl: filter_groups.max_num_gen_batches - 1)
    gen_prompts: int | None = Field(None, ge=1, le=MAX_PROMPTS)  # prompts per generation round under dynamic sampling (verl: data.gen_batch_size;
                                               # official script 384); >= train.prompts_per_step. None = the first round draws
                                               # prompts_per_step, each refill what is missing over the keep rate so far


class OptimConfig(Section):
    lr: float = Field(2e-6, gt=0)              # paper: 2e-6 constant
    weight_decay: float = Field(0.01, ge=0)    # AdamW decoupled weight decay
    betas: tuple[Beta, Beta] = (0.9, 0.999)    # AdamW moment decay rates
    eps: float = Field(1e-8, gt=0)             # AdamW denominator epsilon
    grad_clip: float = Field(1.0, gt=0)        # global grad-norm clip
    schedule: Literal["constant", "cosine", "linear"] = "constant"  # lr after warmup, over RL steps (paper: constant)
    warmup_steps: int = Field(0, ge=0)        # RL steps of linear warmup (not optimizer updates)


class TrainConfig(Section):
    steps: int = Field(4, ge=1)                # RL steps (each: rollout -> reward -> update)
    prompts_per_step: int = Field(4, ge=1, le=MAX_PROMPTS)  # informative groups wanted per step (paper: 128)
    ppo_epochs: int = Field(1, ge=1)           # passes over each step's rollouts
    mini_batches: int = Field(1, ge=1)         # optimizer updates per epoch (paper: 4)
    micro_batch_tokens: int = Field(16384, ge=16, le=MAX_BATCH_TOKENS)  # token budget of one forward/backward
    logprob_chunk_tokens: int = Field(1024, ge=1, le=MAX_BATCH_TOKENS)  # LM-head chunk size for log-probs and entropy
    shared_prompt_forward: bool = True         # run each prompt once per group in the training forward
    attention: Literal["auto", "flex", "blocks", "sdpa"] = "auto"  # shared-prompt attention kernel: flex = compiled flex_attention with a block mask (CUDA; the CPU has no flex backward), blocks = longrl's query-block loops, sdpa = one masked SDPA per group (completions chunked); auto = flex on CUDA, sdpa on the CPU
    sequence_parallel: int = Field(1, ge=1)    # Ulysses SP: ranks that split each training sequence (all-to-all around attention); divides the world size and the attention heads (official 32B script: 8)
    offload: OffloadConfig = OffloadConfig()   # FSDP2 CPU offload of parameters / optimizer state (torchrun)
    eval_every: int = Field(0, ge=0)           # score `data.eval` every N RL steps (and at the last); 0 = never (official script: 5)
    eval_before_train: bool = True             # also score it before the first step (step 0), when eval_every > 0
