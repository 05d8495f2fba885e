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
    assert result["attention"] == "sdpa" and set(result["backends"]) == {"blocks", "sdpa"}
    assert all(b["s"] > 0 and b["max_logprob_diff_vs_per_sample"] < 1e-4 for b in result["backends"].values())
    assert "skipped" in result["flex_forward_only"]          # --quick: no CPU compile


@pytest.mark.slow
def test_bench_logprobs_runs(tmp_path, capsys):
    result = _run("logprobs", tmp_path, capsys)
    assert 0 < result["peak_gb"] < result["naive_peak_gb_extrapolated"]
    assert [m["tokens"] for m in result["naive_measured"]] == [128, 256]


def test_bench_lists_the_rl_benchmarks(capsys):
    assert main(["ls", "benchmarks"]) == 0
    names = capsys.readouterr().out.split()
    assert {"rollout", "forward", "logprobs"} <= set(names)


def test_the_gpu_benchmarks_run_on_the_cpu_at_quick_sizes():
    """engine/bench_cuda.py's logic (the GPU figures' code) on the CPU: static decode instead of the graph."""
    import argparse

    from longrl.engine import bench_cuda

    args = argparse.Namespace(quick=True, device="cpu")
    rollout = bench_cuda.rollout(args, "tiny")
    assert rollout["static"]["path"] == "static" and rollout["dynamic"]["path"] == "dynamic"
    assert rollout["static"]["new_tokens_per_sample"] == [8] and rollout["graph_captured"] is False
    assert 0 < rollout["kv_memory_ratio"] < 0.5 and rollout["speedup"] > 0 and set(rollout["targets"]) == {
        "decode_step_ms<=4", "speedup>=5", "kv_memory_ratio<=0.25"}
    forward = bench_cuda.forward(args, "tiny")
    assert forward["max_logprob_diff_vs_per_sample"] < 1e-4 and forward["max_logprob_diff_vs_hf"] < 1e-4
    assert forward["speedup_vs_hf"] > 0 and forward["attention"] == "sdpa"
    assert forward["max_logprob_diff_vs_shared_blocks"] < 1e-4 and forward["shared_blocks"]["first_call_s"] > 0
    logprobs = bench_cuda.logprobs(args, "tiny")
    assert logprobs["chunked"]["s"] > 0 and logprobs["full_logits"]["s"] > 0


def test_bench_refuses_cuda_where_there_is_none_and_cpu_only_benchmarks(capsys):
    import torch

    if not torch.cuda.is_available():
        for name in ("rollout", "memory"):               # both measure on CUDA where there is one (gpu_check.sh)
            assert main(["bench", name, "--device", "cuda", "--quick"]) == 2
            assert "no CUDA device" in capsys.readouterr().err
    assert main(["bench", "sft", "--device", "cuda", "--quick"]) == 2
    assert "runs on the CPU only" in capsys.readouterr().err


def test_model_and_prompt_tokens_go_to_the_model_benchmarks_only(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "r.json"
    assert main(["bench", "forward", "--quick", "--model", str(tiny_model_dir), "--prompt-tokens", "40",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == str(tiny_model_dir) and result["sizes"]["prompt"] == 40
    assert result["sizes"]["hidden"] == 64 and result["max_logprob_diff"] < 1e-4    # the folder's model, not a preset
    capsys.readouterr()
    assert main(["bench", "logprobs", "--quick", "--model", str(tiny_model_dir)]) == 2
    assert "--model applies to the rollout and forward benchmarks" in capsys.readouterr().err
    assert main(["bench", "rollout", "--quick", "--model", str(tiny_model_dir), "--tiny"]) == 2
    assert "--model replaces --preset and --tiny" in capsys.readouterr().err
