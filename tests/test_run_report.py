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


def test_a_step_without_update_is_a_gap_in_the_update_figures_not_a_line_across(tmp_path):
    import math

    from longrl.report import line

    rows = [{"step": 0, "val/accuracy": 0.2},
            {"step": 1, "reward/mean": 0.5, "entropy": 1.5, "update/skipped": 0.0, "val/accuracy": 0.25},
            {"step": 2, "reward/mean": 0.0, "entropy": None, "update/skipped": 1.0},    # every group filtered
            {"step": 3, "reward/mean": 0.7, "entropy": 1.2, "update/skipped": 0.0, "val/accuracy": 0.5}]
    xs, ys = line(rows, "entropy", offset=10)
    assert xs == [11, 12, 13] and ys[0] == 1.5 and math.isnan(ys[1]) and ys[2] == 1.2
    assert line(rows, "reward/mean") == ([1, 2, 3], [0.5, 0.0, 0.7])       # the rollout happened: a value
    assert line(rows, "val/accuracy") == ([0, 1, 3], [0.2, 0.25, 0.5])     # sparse: joined, no gap
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = write_report(tmp_path).read_text()
    assert f"Steps with no update (1): {tmp_path.name} 2." in text and (tmp_path / "dynamics.png").exists()


def test_every_panel_a_researcher_reads_is_drawn(tmp_path, monkeypatch):
    """Per-task accuracy (training and validation), filtered groups, clip fraction and grad norm get panels."""
    import matplotlib.figure

    from longrl import report

    titles = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **k: titles.extend(ax.get_title(loc="left") for ax in fig.axes if ax.get_visible()))
    rows = [{"step": s, "reward/mean": 0.1 * s, "accuracy": 0.1 * s, "accuracy/docmath": 0.2, "accuracy/multihop": 0.0,
             "filtered_groups_frac": 0.5, "entropy": 1.0, "kl": 0.01, "loss/clip_frac": 0.02, "optim/grad_norm": 0.7,
             "response_len/mean": 30, "val/accuracy": 0.3, "val/docmath/accuracy": 0.4} for s in (1, 2)]
    assert report.plot_dynamics([("p1", rows)], tmp_path / "d.png", grad_clip=1.0)
    assert titles == [p.title for p in report.PANELS]


def test_accuracy_by_length_has_two_standard_errors_and_n_per_model():
    from longrl.report import curve_label, length_curves, standard_error

    summaries = {
        "sft": {"average": 50.0, "benchmarks": {"synthetic-2048": {"score": 40.0, "n": 45, "score_se": 7.3},
                                                "synthetic-1024": {"score": 60.0, "n": 45, "score_se": 7.4}}},
        "rl": {"average": 70.0, "benchmarks": {"synthetic-1024": {"score": 75.0, "n": 40, "samples": 1},     # no score_se
                                               "synthetic-2048": {"score": 65.0, "n": 45, "score_se": 7.1},
                                               "frames": {"score": 10.0, "n": 5}}},
    }
    curves = length_curves(summaries)
    assert curves["sft"] == [(1024, 60.0, 7.4, 45), (2048, 40.0, 7.3, 45)]
    assert curves["rl"][0][:2] == (1024, 75.0) and curves["rl"][0][2] == pytest.approx(100 * (0.75 * 0.25 / 40) ** 0.5)
    assert curve_label("sft", curves["sft"]) == "sft (n=45 per length)"
    assert curve_label("rl", curves["rl"]) == "rl (n=40-45 per length)"
    assert standard_error({"score": 50.0, "n": 10, "samples": 4}) == (None, False)   # a mean of 4 samples: not binary


def test_the_eval_table_gives_a_binomial_interval_when_the_summary_has_no_standard_error(tmp_path):
    (tmp_path / "eval" / "rl").mkdir(parents=True)
    (tmp_path / "eval" / "rl" / "summary.json").write_text(json.dumps(
        {"average": 75.0, "benchmarks": {"synthetic-1024": {"score": 75.0, "n": 48, "samples": 1}}}))
    text = write_report(tmp_path).read_text()
    assert "| rl | 75.0 ± 12.5† (n=48) | 75.0 |" in text and "† the summary has no score_se" in text
    assert (tmp_path / "accuracy_by_length.png").exists()
