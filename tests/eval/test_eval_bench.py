"""The eval benchmarks run (figures are recorded in benchmarks/eval.md, not asserted as timings)."""

from __future__ import annotations

import argparse

import pytest

from longrl.cli.bench import load_benchmarks


@pytest.mark.slow
def test_eval_server_benchmark_runs_quick():
    bench = load_benchmarks().get("eval-server")
    result = bench(argparse.Namespace(quick=True, tiny=False, threads=0, json=None))
    assert result["items"] == 200 and result["requests"] == 200
    assert result["score"] == pytest.approx(50.0)           # the canned server answers every other item right
    assert result["wall_s"] >= result["floor_s"] - 0.05     # cannot beat the server's latency
    assert "eval-overhead" in load_benchmarks().names()
