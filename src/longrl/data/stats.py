"""Counts and length percentiles per task (`longrl data stats FILE [--tokenizer PATH]`)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from longrl.data.prompt import encode_prompt
from longrl.data.schema import Sample

PERCENTILES = (0, 10, 50, 90, 99, 100)


def length_table(samples: list[Sample], tokenizer=None) -> dict[str, dict[str, list[float] | int]]:
    """{task: {"count": n, metric: [p0, p10, p50, p90, p99, max]}} plus an "all" row.

    With a tokenizer the metric is `prompt_tokens` (chat template included); without one,
    `context_words` and `context_chars`.
    """
    values: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for sample in samples:
        for key in (sample.task, "all"):
            row = values[key]
            if tokenizer is not None:
                row["prompt_tokens"].append(len(encode_prompt(tokenizer, sample).ids))
            else:
                row["context_words"].append(len(sample.context.split()))
                row["context_chars"].append(len(sample.context))
    table: dict[str, dict] = {}
    for task in sorted(values, key=lambda t: (t == "all", t)):
        metrics = values[task]
        first = next(iter(metrics.values()))
        table[task] = {"count": len(first)}
        for name, vals in metrics.items():
            table[task][name] = [float(v) for v in np.percentile(np.asarray(vals), PERCENTILES)]
    return table
