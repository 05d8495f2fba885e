"""Config section for data sources: sample files or synthetic tasks made on the fly."""

from __future__ import annotations

from pydantic import Field, model_validator

from longrl.config.base import Section


class SynthSpec(Section):
    """Synthetic long-document tasks (`longrl data synth` takes the same knobs)."""

    tasks: list[str] = ["docmath", "multihop", "choice"]  # families, mixed round-robin
    n: int = Field(64, ge=1)                   # number of samples
    length: int = Field(512, ge=32, le=1 << 20)  # target prompt length (chat template included, +-10%) in tokens of the model's tokenizer
    seed: int = 0                              # same seed, byte-identical samples
    hops: int | None = Field(None, ge=1)       # reasoning hops; None = the family's default
    distractors: int | None = Field(None, ge=0)  # decoy facts; None = grows with length


class DataSource(Section):
    """Exactly one of `path` (JSONL or parquet of Samples) or `synth`."""

    path: str | None = None                    # a Samples file: .jsonl or .parquet (`longrl data import` converts others)
    synth: SynthSpec | None = None
    limit: int | None = Field(None, ge=1)      # keep the first N samples

    @model_validator(mode="after")
    def _one_kind(self) -> DataSource:
        if (self.path is None) == (self.synth is None):
            raise ValueError("a data source needs exactly one of `path` or `synth`")
        return self


class DataConfig(Section):
    train: list[DataSource] = [DataSource(synth=SynthSpec())]  # RL training items
    eval: list[DataSource] = []               # held-out items scored during RL (`train.eval_every`); [] = no validation
    skip_bad: bool = False                    # skip malformed rows (and report how many) instead of failing
