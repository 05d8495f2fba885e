"""Results table in the paper's layout; flat metrics for a metrics log."""

from __future__ import annotations

from longrl.config.eval import EvalConfig
from longrl.eval.report import flat_metrics, results_markdown


def summary():
    cfg = EvalConfig(samples=4, pass_k=[2, 4]).model_dump(mode="json")
    benchmarks = {"docmath": {"display": "DocMath", "score": 61.0, "n": 200, "pass@1": 61.0, "pass@2": 70.25, "pass@4": 80.0},
                  "frames": {"display": "Frames", "score": 64.25, "n": 824, "pass@1": 64.25, "pass@2": 72.0, "pass@4": 79.5}}
    return {"benchmarks": benchmarks, "average": 62.625, "model": "R1-Distill-Qwen-14B", "judge": None, "config": cfg}


def test_markdown_table_layout():
    text = results_markdown(summary())
    lines = text.splitlines()
    start = lines.index("| model | DocMath | Frames | Avg |")
    assert lines[start + 1] == "|---|---|---|---|"
    assert lines[start + 2] == "| R1-Distill-Qwen-14B | 61.0 | 64.2 | 62.6 |"
    assert lines[start + 3] == "| R1-Distill-Qwen-14B (pass@2) | 70.2 | 72.0 | 71.1 |"
    assert lines[start + 4] == "| R1-Distill-Qwen-14B (pass@4) | 80.0 | 79.5 | 79.8 |"
    assert "Items: DocMath 200, Frames 824." in text
    assert "120000 input tokens (middle truncation), 10000 new tokens, temperature 0.7, top_p 0.95" in text
    assert "judge: none (rule only)" in text and "4 sample(s) per item" in text


def test_flat_metrics_are_namespaced():
    metrics = flat_metrics(summary())
    assert metrics["eval/average"] == 62.625 and metrics["eval/docmath/score"] == 61.0 and metrics["eval/frames/pass@4"] == 79.5
    assert "eval/docmath/display" not in metrics and all(k.startswith("eval/") for k in metrics)
