"""Config section `eval`: benchmarks and the evaluation protocol (defaults as published)."""

from __future__ import annotations

from pydantic import Field

from longrl.sections import Section


class EvalConfig(Section):
    benchmarks: list[str] = ["docmath", "frames", "2wikimqa", "hotpotqa", "musique", "narrativeqa", "qasper"]
    data_dir: str | None = None                # one JSONL per benchmark
    model: str | None = None                   # local path / builtin name, or http(s) URL of a server
    model_name: str | None = None              # name sent to a server
    tokenizer: str | None = None               # for truncation when the model is a server
    max_input_tokens: int = Field(120_000, ge=16)  # middle truncation: first and last halves kept
    max_new_tokens: int = Field(10_000, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    samples: int = Field(1, ge=1)              # n per item: pass@1 averaged, unbiased pass@k
    limit: int | None = Field(None, ge=1)      # first N items per benchmark
    concurrency: int = Field(64, ge=1)         # server requests in flight
    timeout_s: float = Field(600.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    api_key_env: str | None = "LONGRL_API_KEY"
    batch_size: int = Field(8, ge=1)           # local model: prompts decoded together
