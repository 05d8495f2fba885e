"""Exporters from Samples to the dataset formats of other RL frameworks (`longrl data export`).

    longrl data export --format verl data.jsonl --out train.parquet     # verl's RL parquet
    longrl data export --format trl data.jsonl --out train.jsonl        # a TRL dataset (JSONL or parquet)

`verl`: one parquet row per Sample, as verl's RLHFDataset reads it and longrl's verl reward scores it
(`longrl.rewards.compat.compute_score`):

    {"data_source": task, "prompt": [{"role": "user", "content": <the method.md prompt>}],
     "ability": "long-context-qa", "reward_model": {"style": "rule", "ground_truth": [answers...]},
     "extra_info": {"index": i, "id", "question", "choices", "meta": <JSON text>}}

`longrl data import --format docqa-rl` reads such a file back into the same Samples (the document
comes out of the prompt, the rest out of extra_info).

`trl`: one row per Sample in TRL's conversational format, with the columns longrl's TRL reward reads
(`longrl.rewards.compat.longrl_reward`):

    {"prompt": [{"role": "user", "content": ...}], "answers": [...], "task", "id", "question"}

plus `"completion": [{"role": "assistant", "content": meta.trace}]` when every Sample carries a
demonstration (the output of `longrl distill`), which is TRL SFTTrainer's prompt-completion format.
Documents are exported whole: verl's `data.max_prompt_length` / TRL's `max_prompt_length` decide
what fits (longrl itself middle-truncates at `rollout.max_input_tokens`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longrl.data.io import write_jsonl
from longrl.data.prompt import user_message
from longrl.data.schema import Sample
from longrl.errors import UserError
from longrl.files import atomic_open
from longrl.registry import Registry

ABILITY = "long-context-qa"

Exporter = Callable[[list[Sample], Path], int]
EXPORTERS: Registry[Exporter] = Registry("export format")


def verl_row(sample: Sample, index: int) -> dict[str, Any]:
    return {
        "data_source": sample.task,
        "prompt": [{"role": "user", "content": user_message(sample)}],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": list(sample.answers)},
        "extra_info": {"index": index, "id": sample.id, "question": sample.question, "choices": list(sample.choices or []),
                       "meta": json.dumps(sample.meta, sort_keys=True, ensure_ascii=False)},
    }


def trl_row(sample: Sample, with_completion: bool) -> dict[str, Any]:
    row = {"prompt": [{"role": "user", "content": user_message(sample)}], "answers": list(sample.answers),
           "task": sample.task, "id": sample.id, "question": sample.question}
    if with_completion:
        row["completion"] = [{"role": "assistant", "content": sample.trace}]
    return row


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa  # lazy: pyarrow is slow to import and only parquet files need it
    import pyarrow.parquet as pq

    with atomic_open(path, "wb") as fh:
        pq.write_table(pa.Table.from_pylist(rows), fh)


@EXPORTERS.register("verl")
def export_verl(samples: list[Sample], path: Path) -> int:
    """verl's RL parquet (`data.train_files`); the output must be a .parquet file."""
    if path.suffix != ".parquet":
        raise UserError(f"--out {path}: verl reads parquet files; name the output *.parquet")
    write_parquet([verl_row(s, i) for i, s in enumerate(samples)], path)
    return len(samples)


@EXPORTERS.register("trl")
def export_trl(samples: list[Sample], path: Path) -> int:
    """A TRL dataset (`datasets.load_dataset("json"|"parquet", data_files=...)`), by the output's extension."""
    with_completion = bool(samples) and all(isinstance(s.trace, str) and s.trace for s in samples)
    rows = [trl_row(s, with_completion) for s in samples]
    if path.suffix == ".parquet":
        write_parquet(rows, path)
    else:
        write_jsonl(path, rows)
    return len(rows)
