"""data/sources.py: loading data sources (files and synthetic specs), unique ids across sources."""

from __future__ import annotations

import pytest

from longrl.config.data import DataSource, SynthSpec
from longrl.data.io import write_samples
from longrl.data.sources import load_items
from longrl.errors import DataError, UserError


def test_load_items_from_file_and_synth_with_limits(tmp_path, samples, tokenizer):
    path = tmp_path / "train.jsonl"
    write_samples(path, samples[:5])
    synth = SynthSpec(tasks=["multihop"], n=3, length=120, seed=9)
    items = load_items([DataSource(path=str(path), limit=4), DataSource(synth=synth)], tokenizer)
    assert [s.id for s in items[:4]] == [s.id for s in samples[:4]]
    assert len(items) == 7 and all(s.task == "multihop" for s in items[4:])


def test_load_items_rejects_duplicate_ids_and_bad_files(tmp_path, samples):
    path = tmp_path / "a.jsonl"
    write_samples(path, samples[:3])
    with pytest.raises(UserError, match=r"sample id .* already appears in source 0"):
        load_items([DataSource(path=str(path)), DataSource(path=str(path))], None)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 1, field 'task'"):
        load_items([DataSource(path=str(bad))], None)
