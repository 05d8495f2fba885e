"""Export to verl's parquet and TRL's dataset format: rows as those frameworks and longrl's adapters read them."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from longrl.cli import main
from longrl.data.io import read_samples, write_samples
from longrl.data.prompt import user_message
from longrl.data.schema import Sample
from longrl.errors import DataError
from longrl.rewards.compat import compute_score, longrl_reward


@pytest.fixture()
def sample_file(tmp_path, samples):
    path = tmp_path / "samples.jsonl"
    write_samples(path, samples)
    return path


def test_verl_export_round_trips_and_scores_with_the_verl_adapter(tmp_path, sample_file, samples):
    out = tmp_path / "train.parquet"
    assert main(["data", "export", "--format", "verl", str(sample_file), "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert set(table.column_names) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    rows = table.to_pylist()
    assert rows[0]["prompt"] == [{"role": "user", "content": user_message(samples[0])}]
    assert [r["extra_info"]["index"] for r in rows] == list(range(len(samples)))
    # verl hands compute_score the ground truth as a numpy array (non_tensor_batch): the trace scores 1
    for row, sample in zip(rows, samples):
        truth = np.array(row["reward_model"]["ground_truth"], dtype=object)
        assert compute_score(row["data_source"], sample.trace, truth, row["extra_info"]) == 1.0
    # and `data import` gives back the very Samples
    back = tmp_path / "back.jsonl"
    assert main(["data", "import", "--format", "docqa-rl", str(out), "--out", str(back)]) == 0
    assert read_samples(back).samples == samples


def test_trl_export_feeds_longrl_reward(tmp_path, sample_file, samples):
    out = tmp_path / "train.jsonl"
    assert main(["data", "export", "--format", "trl", str(sample_file), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(rows[0]) == {"prompt", "answers", "task", "id", "question", "completion"}   # every sample has a trace
    columns = {k: [r[k] for r in rows] for k in ("answers", "task", "question")}
    completions = [r["completion"] for r in rows]                                # conversational, as TRL passes them
    assert longrl_reward(prompts=[r["prompt"] for r in rows], completions=completions, **columns) == [1.0] * len(rows)
    bare = [Sample(**{**s.to_dict(), "meta": {}}) for s in samples[:2]]
    write_samples(tmp_path / "bare.jsonl", bare)
    assert main(["data", "export", "--format", "trl", str(tmp_path / "bare.jsonl"), "--out", str(tmp_path / "t.parquet")]) == 0
    assert "completion" not in pq.read_table(tmp_path / "t.parquet").column_names


def test_verl_export_needs_parquet(tmp_path, sample_file, capsys):
    assert main(["data", "export", "--format", "verl", str(sample_file), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "verl reads parquet files" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()


def test_a_verl_parquet_where_samples_belong_says_how_to_convert_it(tmp_path, sample_file, capsys):
    verl = tmp_path / "docqa.parquet"
    main(["data", "export", "--format", "verl", str(sample_file), "--out", str(verl)])
    with pytest.raises(DataError, match=r"longrl data import --format docqa-rl .*docqa.parquet --out FILE.jsonl"):
        read_samples(verl)
    row = pq.read_table(verl).to_pylist()[0]
    (tmp_path / "verl.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match="verl / DocQA-RL row: convert the file with `longrl data import"):
        read_samples(tmp_path / "verl.jsonl")
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{train: [{{path: {verl}}}]}}\n")
    assert main(["rl", "--config", str(config), "--out", str(tmp_path / "run"), "model.path=random"]) == 2
    assert "longrl data import --format docqa-rl" in capsys.readouterr().err
