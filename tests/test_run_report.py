"""report.py (the run report): whatever a run directory holds, `write_report` writes a report or names the file it cannot read."""

import json

import pytest

from longrl.errors import DataError
from longrl.report import write_report


def test_unreadable_metrics_lines_are_skipped(tmp_path):
    (tmp_path / "metrics.jsonl").write_bytes(
        b'{"step": 1, "reward/mean": 0.25}\n\xff\xfe not utf-8\n{"step": "two", "reward/mean": "high"}\n'
        b'{"step": 3, "reward/mean": 0.5, "kl": "n/a"}\n{"step": 4, "reward'
    )
    text = write_report(tmp_path).read_text()
    assert f"| {tmp_path.name} | 2 | - | - | - | - | - | 0.250 -> 0.500 | - | - |" in text  # steps 1 and 3; the rest skipped
    assert (tmp_path / "dynamics.png").exists()


def test_validation_during_rl_is_tabled_and_plotted(tmp_path):
    rows = [{"step": 0, "val/accuracy": 0.2}, {"step": 1, "reward/mean": 0.1}, {"step": 2, "reward/mean": 0.3, "val/accuracy": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = write_report(tmp_path).read_text()
    assert f"| {tmp_path.name} | 2 | - | - | - | - | - | 0.100 -> 0.300 | - | 0.200 -> 0.500 |" in text   # step 0 is no RL step
    assert "held-out accuracy" in text and (tmp_path / "dynamics.png").exists()


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", r"summary.json, file: not readable JSON"),
    (b"\xff\xfe", r"summary.json, file: not readable JSON"),
    (b"[" * 10000 + b"]" * 10000, r"summary.json, file: not readable JSON \(nested deeper than 64 levels\)"),
    (b"[1, 2]", r"summary.json, file: expected a JSON object, got list"),
    (json.dumps({"benchmarks": {"frames": {"score": "high", "n": 3}}, "average": 1.0}).encode(), r"benchmark 'frames', field 'score'"),
    (json.dumps({"average": 1.0}).encode(), r"summary.json, file, field 'benchmarks': not an eval summary"),
])
def test_a_broken_eval_summary_names_its_file(tmp_path, content, message):
    (tmp_path / "eval" / "policy").mkdir(parents=True)
    (tmp_path / "eval" / "policy" / "summary.json").write_bytes(content)
    with pytest.raises(DataError, match=message):
        write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()
