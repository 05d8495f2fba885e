"""The three performance benchmarks run end to end (--quick sizes; no timing assertions)."""

from __future__ import annotations

import json

import pytest

from longrl.cli import main


def _run(name, tmp_path, capsys):
    out = tmp_path / f"{name}.json"
    assert main(["bench", name, "--quick", "--tiny", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result
    assert result["benchmark"] == name and "machine" in result
    return result


def test_bench_rollout_runs(tmp_path, capsys):
    result = _run("rollout", tmp_path, capsys)
    assert result["speedup"] > 0 and result["cpu_speedup"] > 0
    assert 0 < result["kv_memory_ratio"] < 1                 # the prompt is stored once, not G times
    assert result["new_tokens_per_sample"] == [result["sizes"]["new_tokens"]]


def test_bench_forward_runs(tmp_path, capsys):
    result = _run("forward", tmp_path, capsys)
    assert result["speedup"] > 0
    assert result["max_logprob_diff"] < 1e-4                 # shared and per-sample agree


@pytest.mark.slow
def test_bench_logprobs_runs(tmp_path, capsys):
    result = _run("logprobs", tmp_path, capsys)
    assert 0 < result["peak_gb"] < result["naive_peak_gb_extrapolated"]
    assert [m["tokens"] for m in result["naive_measured"]] == [128, 256]


def test_bench_lists_the_rl_benchmarks(capsys):
    assert main(["ls", "benchmarks"]) == 0
    names = capsys.readouterr().out.split()
    assert {"rollout", "forward", "logprobs"} <= set(names)
