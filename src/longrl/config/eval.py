"""Config section `eval`: benchmarks and the evaluation protocol (defaults as published in QwenLong-L1)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from longrl.config.base import MAX_BATCH, MAX_GROUP_SIZE, MAX_INPUT_TOKENS, MAX_NEW_TOKENS, Section
from longrl.config.reward import JudgeConfig

DOCQA7 = ["docmath", "frames", "2wikimqa", "hotpotqa", "musique", "narrativeqa", "qasper"]


class SyntheticSuiteConfig(Section):
    """Held-out synthetic suites, named `synthetic-<length>` in `eval.benchmarks` (e.g. synthetic-1024)."""

    n: int = Field(100, ge=1)                  # items per suite (families round-robin)
    seed: int = 10_007                         # held out: must differ from every training `synth.seed`
    tasks: list[str] = ["docmath", "multihop", "choice"]  # synthetic families


class EvalConfig(Section):
    benchmarks: list[str] = DOCQA7             # BENCHMARKS names (`longrl ls evals`); synthetic-<length> for held-out synthetic suites
    protocol: Literal["strict", "published"] = "strict"  # prompts (joins, truncation) and rule scoring: published = as the paper's scripts
    data_dir: str | None = None                # one JSONL per benchmark: DATA_DIR/docmath.jsonl, DATA_DIR/frames.jsonl, ...
    model: str | None = None                   # local folder / builtin:NAME, or http(s):// URL of an OpenAI-compatible server; None = model.path
    model_name: str | None = None              # model name sent to a server; None = the first id of GET {url}/models
    api: Literal["chat", "completions"] = "chat"  # server endpoint: chat/completions (server's template) or completions (longrl renders it)
    tokenizer: str | None = None               # tokenizer used to count and truncate prompts; None = the local model's (required for servers)
    max_input_tokens: int | None = Field(120_000, ge=16, le=MAX_INPUT_TOKENS)  # middle truncation of the document, first/last halves kept (paper: 120K); None = off
    max_new_tokens: int = Field(10_000, ge=1, le=MAX_NEW_TOKENS)  # response limit (paper: 10K)
    temperature: float = Field(0.7, ge=0)      # paper: 0.7
    top_p: float = Field(0.95, gt=0, le=1)     # paper: 0.95
    top_k: int = Field(0, ge=0)                # 0 = off
    samples: int = Field(1, ge=1, le=MAX_GROUP_SIZE)  # n completions per item: score = pass@1 averaged over the n
    pass_k: list[int] = []                     # also report unbiased pass@k for these k (each <= samples)
    limit: int | None = Field(None, ge=1)      # first N items per benchmark
    judge: JudgeConfig | None = None           # eval judge (paper: DeepSeek-V3, temperature 0); None = the `reward.judge` section
    concurrency: int = Field(64, ge=1)         # server requests in flight
    timeout_s: float = Field(600.0, gt=0)      # per request attempt
    max_attempts: int = Field(3, ge=1)         # retries on 429 / 5xx / timeouts / dropped connections, exponential backoff
    backoff_s: float = Field(1.0, ge=0)        # first backoff; doubles each attempt
    request_n: bool = True                     # one request asks for all n samples (vLLM, SGLang, OpenAI); false = n requests
    api_key_env: str | None = "LONGRL_API_KEY"  # environment variable holding the server's API key; never logged
    batch_size: int = Field(8, ge=1, le=MAX_BATCH)  # local model: items decoded together (each with its n samples)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None  # local model: weights and compute dtype of the evaluated model; None = model.dtype (bfloat16: ~2x faster on CPUs with AMX and on GPUs)
    synthetic: SyntheticSuiteConfig = SyntheticSuiteConfig()  # the synthetic-<length> suites
    include_base: bool = False                 # pipeline: also evaluate model.path, the model before warm-up SFT (eval/base)

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if not self.benchmarks:
            raise ValueError("eval.benchmarks is empty; name at least one (see `longrl ls evals`)")
        if len(set(self.benchmarks)) != len(self.benchmarks):
            raise ValueError("eval.benchmarks lists a benchmark twice")
        too_big = [k for k in self.pass_k if not 1 <= k <= self.samples]
        if too_big:
            raise ValueError(f"pass_k {too_big} must lie in 1..samples ({self.samples}); raise eval.samples or drop them")
        return self
