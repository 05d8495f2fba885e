"""`--download`: rows from the `datasets` library (faked here: the hub is outside world) are checked, then written."""

from __future__ import annotations

import sys
import types

import pytest

from longrl.errors import DataError, UserError
from longrl.eval.benchmarks import BENCHMARKS
from longrl.eval.fetch import fetch_missing


def fake_datasets(monkeypatch, splits):
    calls = []

    def load_dataset(repo, config=None):
        calls.append((repo, config))
        return splits

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_download_writes_checked_files_and_skips_present_ones(tmp_path, monkeypatch):
    rows = [{"_id": "h1", "input": "Where?", "context": "In Tarsk.", "answers": ["Tarsk"], "length": 3}]
    calls = fake_datasets(monkeypatch, {"test": rows})
    written = fetch_missing(["hotpotqa", "synthetic-64"], str(tmp_path))
    assert written == [tmp_path / "hotpotqa.jsonl"] and calls == [("THUDM/LongBench", "hotpotqa")]
    assert BENCHMARKS.get("hotpotqa").load(tmp_path).samples[0].answers == ["Tarsk"]
    assert fetch_missing(["hotpotqa"], str(tmp_path)) == [] and len(calls) == 1  # present: not fetched again


def test_download_rejects_rows_in_another_format(tmp_path, monkeypatch):
    fake_datasets(monkeypatch, {"train": [{"question": "q", "answer": "a"}]})
    with pytest.raises(DataError, match=r"Tongyi-Zhiwen/frames \(train\), row 0, field 'Prompt': missing"):
        fetch_missing(["frames"], str(tmp_path))
    assert not (tmp_path / "frames.jsonl").exists()
    with pytest.raises(UserError, match="--data-dir"):
        fetch_missing(["frames"], None)


def test_download_without_datasets_says_how(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(UserError, match="pip install datasets"):
        fetch_missing(["qasper"], str(tmp_path))
