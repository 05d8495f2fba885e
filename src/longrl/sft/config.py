"""Config section `sft`: warm-up supervised fine-tuning on demonstrations."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from longrl.data.config import DataSource
from longrl.sections import Section


class SFTConfig(Section):
    data: list[DataSource] = []                # demonstrations (Samples whose meta.trace is the response)
    epochs: float = Field(1.0, gt=0)           # passes over the data (fractions allowed)
    batch_tokens: int = Field(8192, ge=16)     # packed tokens per optimizer step
    max_seq_tokens: int | None = Field(None, ge=16)  # drop longer demonstrations (counted)
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    eval_fraction: float = Field(0.05, ge=0, lt=1)  # held out for eval loss
    eval_every: int = Field(50, ge=1)
