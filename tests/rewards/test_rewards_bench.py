"""The reward benchmarks run end to end (sizes from --quick; figures are not asserted, only their sanity)."""

from __future__ import annotations

import json

import pytest

from longrl.cli import main


def run_bench(name, tmp_path, capsys):
    path = tmp_path / f"{name}.json"
    assert main(["bench", name, "--quick", "--json", str(path)]) == 0
    capsys.readouterr()
    return json.loads(path.read_text())


def test_verifiers_benchmark(tmp_path, capsys):
    result = run_bench("verifiers", tmp_path, capsys)
    assert result["responses"] == 10_000 and 0.3 < result["reward_mean"] < 0.9
    assert 0 < result["no_answer_frac"] < 0.1 and 0 < result["unfinished_frac"] < 0.1
    assert result["absurd_max_score"] == 0.0


@pytest.mark.slow
def test_judge_benchmark(tmp_path, capsys):
    result = run_bench("judge", tmp_path, capsys)
    assert result["server_requests"] == result["calls"] == 200 and result["judge_errors"] == 0
    assert result["rerun_server_requests"] == 0 and 1 <= result["server_max_in_flight"] <= 32


def test_adversarial_benchmark(tmp_path, capsys):
    result = run_bench("adversarial", tmp_path, capsys)
    assert result["response_chars"] == 100_000 and result["scored"] == result["cases"] * 6
    assert set(result["worst_ms_by_protocol_task"]) == {f"{p}/{t}" for p in ("strict", "published")
                                                        for t in ("choice", "docmath", "multihop")}
    assert result["worst_ms"] > 0 and result["worst_case"]
