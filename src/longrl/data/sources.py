"""Load the Samples a config names: files of Samples, or synthetic tasks made on the fly.

    items = load_items(cfg.data.train, tokenizer, skip_bad=cfg.data.skip_bad)

A `DataSource` is a path (JSONL or parquet of Samples) or a `synth` spec; synthetic prompt
lengths are counted with `tokenizer` (the policy's; None will do when every source is a file). Sample ids
must be unique across the sources of one list: they key item scores and retrospective sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

from longrl.config.data import DataSource
from longrl.console import info
from longrl.data.io import read_samples
from longrl.data.schema import Sample
from longrl.data.synthetic import synthesize
from longrl.errors import UserError


def load_source(source: DataSource, tokenizer, skip_bad: bool = False) -> list[Sample]:
    """The Samples of one data source (file or synthetic), after its `limit`."""
    if source.path is not None:
        loaded = read_samples(source.path, skip_bad=skip_bad)
        if loaded.skipped:
            info(f"{source.path}: skipped {len(loaded.skipped)} malformed rows; first: {loaded.skipped[0]}")
        samples = loaded.samples
    else:
        spec = source.synth
        samples = synthesize(spec.tasks, spec.n, spec.length, spec.seed, spec.hops, spec.distractors, tokenizer)
    return samples[: source.limit] if source.limit else samples


def load_items(sources: Sequence[DataSource], tokenizer, skip_bad: bool = False) -> list[Sample]:
    """All samples of `sources`, in order; ids must be unique across sources (they key item scores)."""
    items: list[Sample] = []
    origin: dict[str, int] = {}
    for k, source in enumerate(sources):
        for sample in load_source(source, tokenizer, skip_bad):
            if sample.id in origin:
                raise UserError(f"data source {k} ({describe(source)}): sample id {sample.id!r} already appears in "
                                f"source {origin[sample.id]} ({describe(sources[origin[sample.id]])}); ids must be unique")
            origin[sample.id] = k
            items.append(sample)
    return items


def describe(source: DataSource) -> str:
    """A data source in a few words, for messages."""
    if source.path is not None:
        return source.path
    return f"synth tasks={','.join(source.synth.tasks)} n={source.synth.n} length={source.synth.length} seed={source.synth.seed}"
