"""RL with `rollout.backend: server` under torchrun (2 gloo ranks) against `longrl serve` on loopback, serving bf16.

Each rank sends its own groups' requests (seeded per group), every rank gathers the FSDP2-sharded
weights for a hand-over and rank 0 writes them in bf16 and has the server reload them. The 2-rank
run, as 2 data replicas and in the official recipe's shape (one replica at train.sequence_parallel=2,
with train.offload of parameters and optimizer: both ranks train on the same groups, each requests
its half of them), must give the 1-rank run's rollouts, losses and weights and send the server as
many generation requests (no group requested twice); a server that fails mid-run must stop every
rank with the same clear error, promptly, and a non-zero exit. (On the CPU the offloaded shards stay
where they are: the offload part checks the wiring, as tests/rl/test_offload_distributed.py does; a
`gpu` test runs the same shape on 2 GPUs, where the shards are gathered on the GPUs for the hand-over.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from longrl.cli import main
from longrl.config import load_config
from longrl.serve.protocol import RequestError
from longrl.serve.server import ModelServer
from longrl.serve.worker import ModelWorker
from longrl.tracking import read_metrics
from test_trainer_distributed import relative_difference

pytestmark = pytest.mark.slow          # torchrun five times (about 30-60 s each on 2 cores)
ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"
STEPS = 3


class FlakyServer(ModelServer):
    """longrl serve that refuses the reload of one version (the outside world misbehaving)."""

    fail_version: str | None = None

    refuse_single_samples = False              # answer 400 to requests for n = 1 sample (validation's)
    requests = 0                               # generation requests received

    def _parse_job(self, route, body):
        self.requests += 1
        if self.refuse_single_samples and isinstance(body, dict) and body.get("n") == 1:
            raise RequestError(400, "n = 1 is not served today")
        return super()._parse_job(route, body)

    def reload(self, body):
        self.asked.append(body.get("weight_version"))
        if body.get("weight_version") == self.fail_version:
            return 400, {"success": False, "message": "disk full"}
        return super().reload(body)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("srvdist")


def serve(model_dir: Path, tokenizer, weights_root: Path) -> FlakyServer:
    """The starting policy served in bf16, one group per batch (a group's samples then do not depend on
    which other requests arrive with it), reloading from under `weights_root`."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.bfloat16)
    worker = ModelWorker(model, tokenizer, "policy", str(model_dir), groups_per_batch=1)
    server = FlakyServer(worker, port=0, weights_root=weights_root).start()
    server.asked = []
    return server


def overrides(model_dir: Path, url: str, *extra: str) -> list[str]:
    return [f"model.path={model_dir}", "run.progress=none", "run.torch_threads=1", f"train.steps={STEPS}",
            "reward.overlong.buffer=16", "rollout.max_new_tokens=16", "rollout.group_size=4",
            "train.prompts_per_step=4", "train.mini_batches=2", "algo.dynamic_sampling=true",
            "algo.filter_metric=reward", "algo.max_refills=1", "train.micro_batch_tokens=300", "algo.kl_coef=0.01",
            "optim.lr=1e-3", "data.train=[{synth: {tasks: [docmath, multihop, choice], n: 12, length: 200, seed: 0}}]",
            "rollout.backend=server",
            f"rollout.server={{base_url: '{url}', api_key_env: null, dtype: bfloat16, timeout_s: 30, "
            "max_attempts: 2, backoff_s: 0}", *extra]


def torchrun(out: Path, args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LONGRL_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "longrl.cli", "rl", "--config", str(SMOKE), "--out", str(out), *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def runs(root, stoppy_model_dir, tokenizer):
    """The same config on one process (this one) and on two torchrun ranks, against one bf16 server."""
    torch.set_num_threads(1)
    server = serve(stoppy_model_dir, tokenizer, root)
    try:
        assert main(["rl", "--config", str(SMOKE), "--out", str(root / "one"),
                     *overrides(stoppy_model_dir, server.url)]) == 0
        one_asked, server.counted = list(server.asked), {"one": server.requests}
        proc = torchrun(root / "two", overrides(stoppy_model_dir, server.url))
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output[-4000:]
        server.counted["two"] = server.requests - server.counted["one"]
        server.held = {"two": served_weights(server)}
        yield root / "one", root / "two", one_asked, list(server.asked[len(one_asked):]), server
    finally:
        server.close()


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "model.safetensors"))


def served_weights(server: FlakyServer) -> dict[str, torch.Tensor]:
    """What the server holds now (after a run's last hand-over)."""
    return {name: tensor.clone() for name, tensor in server.worker.model.state_dict().items()}


def assert_serves_final(held: dict[str, torch.Tensor], run: Path) -> None:
    """The server held `run`'s final policy, rounded to bf16 (the last hand-over)."""
    final = weights(run)
    assert final.keys() <= held.keys()
    for name, tensor in final.items():
        assert held[name].dtype == torch.bfloat16 and torch.equal(held[name], tensor.to(torch.bfloat16)), name


@pytest.fixture(scope="module")
def sequence_parallel_run(runs, root, stoppy_model_dir):
    """Two torchrun ranks at train.sequence_parallel=2 (one data replica) with parameter and optimizer offload,
    against the same server; its generation requests counted. Returns its run folder and the versions it reloaded."""
    server = runs[4]
    before, reloads = server.requests, len(server.asked)
    proc = torchrun(root / "sp2", overrides(stoppy_model_dir, server.url, "train.sequence_parallel=2",
                                            "train.offload.params=true", "train.offload.optimizer=true"))
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-4000:]
    server.counted["sp2"] = server.requests - before
    server.held["sp2"] = served_weights(server)
    return root / "sp2", server.asked[reloads:]


def test_two_ranks_against_a_server_end_as_one_rank(runs, stoppy_model_dir):
    one, two, _, _, server = runs
    assert_same_as_one_rank(one, two, stoppy_model_dir, "2 ranks", sequence_parallel=1)
    assert server.counted["two"] == server.counted["one"] > 0


def test_sequence_parallel_2_and_offload_against_a_server_end_as_one_rank_requesting_each_group_once(
        runs, sequence_parallel_run, stoppy_model_dir):
    one, _, asked_one, _, server = runs
    run, asked = sequence_parallel_run
    assert_same_as_one_rank(one, run, stoppy_model_dir, "2 ranks at sequence_parallel 2 with offload",
                            sequence_parallel=2)
    assert load_config(run / "config.yaml").train.offload.params                  # the run recorded its offload
    assert asked == asked_one                                                     # one hand-over per step
    assert_serves_final(server.held["sp2"], run)
    rows = read_metrics(one / "metrics.jsonl")
    assert server.counted["one"] == sum(r["rollout/groups"] for r in rows) > 0      # one request per group rolled out
    assert server.counted["sp2"] == server.counted["one"], server.counted           # no group requested twice
    print(f"generation requests: {server.counted}")


def assert_same_as_one_rank(one: Path, other: Path, start_dir: Path, label: str, sequence_parallel: int) -> None:
    """`other` (2 torchrun ranks) ended with `one`'s weights and had its rollouts, rewards and losses."""
    start = load_file(str(start_dir / "model.safetensors"))
    a, b = weights(one), weights(other)
    moved = {k: a[k] - start[k] for k in a}
    weight_diff, update_diff = relative_difference(b, a), relative_difference({k: b[k] - start[k] for k in b}, moved)
    print(f"server backend, {label} vs 1: relative difference of weights {weight_diff:.2e}, of the updates {update_diff:.2e}")
    assert weight_diff < 1e-4 and update_diff < 1e-3          # the bound of tests/rl/test_trainer_distributed.py
    assert all(float(v.abs().max()) > 0 for v in moved.values())
    rows1, rows2 = read_metrics(one / "metrics.jsonl"), read_metrics(other / "metrics.jsonl")
    assert [r["step"] for r in rows2] == list(range(1, STEPS + 1))
    assert {r["dist/world_size"] for r in rows2} == {2}
    assert {r["dist/sequence_parallel"] for r in rows2} == {sequence_parallel}
    for r1, r2 in zip(rows1, rows2):              # the same rollouts (token for token), refills, filtering, losses
        for key in ["reward/mean", "accuracy", "response_len/mean", "rollout/tokens", "rollout/groups",
                    "rollout/refills", "filtered_groups_frac", "optim/updates", "update/tokens", "weights/sync_bytes"]:
            assert r1[key] == r2[key], key
        for key in ["loss/total", "entropy", "kl", "optim/grad_norm"]:
            assert r2[key] == pytest.approx(r1[key], rel=1e-5, abs=1e-7), key
    assert read_metrics(one / "item_scores.jsonl") == read_metrics(other / "item_scores.jsonl")
    for name in sorted(p.name for p in (one / "samples").iterdir()):
        assert (one / "samples" / name).read_text() == (other / "samples" / name).read_text(), name


def test_the_hand_over_is_bf16_once_per_step(runs):
    one, two, asked_one, asked_two, server = runs
    assert asked_one == asked_two == [f"step-{s}" for s in range(STEPS + 1)]        # once before, once per step
    for run in (one, two):
        served = run / "served" / f"step-{STEPS}"
        assert sorted(p.name for p in (run / "served").iterdir()) == [f"step-{STEPS}"]
        with safe_open(str(served / "model.safetensors"), framework="pt") as fh:
            dtypes = {fh.get_slice(n).get_dtype() for n in fh.keys()}
            tensor_bytes = sum(fh.get_tensor(n).numel() * 2 for n in fh.keys())
        assert dtypes == {"BF16"}                                       # no fp32 file: the masters are not written
        rows = read_metrics(run / "metrics.jsonl")
        assert [r["weights/sync_bytes"] for r in rows] == [2 * tensor_bytes] + [tensor_bytes] * (STEPS - 1)
        assert all(r["weights/sync_s"] > 0 for r in rows)
    assert_serves_final(server.held["two"], two)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (NCCL: one rank per GPU)")
def test_two_gpus_at_sequence_parallel_2_with_offload_hand_over_to_a_server(root, stoppy_model_dir, tokenizer):
    """The CUDA path of the official shape: NCCL all-to-alls, shards offloaded to pinned host memory and gathered
    on the GPUs for each hand-over. Every group is requested once, the server reloads once per step, and it ends
    holding the run's final policy in bf16."""
    server = serve(stoppy_model_dir, tokenizer, root)
    out = root / "cuda-sp2"
    try:
        proc = torchrun(out, overrides(stoppy_model_dir, server.url, "run.device=cuda", "train.sequence_parallel=2",
                                       "train.offload.params=true", "train.offload.optimizer=true"))
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output[-4000:]
        held = served_weights(server)
    finally:
        server.close()
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert {r["dist/sequence_parallel"] for r in rows} == {2}
    assert server.requests == sum(r["rollout/groups"] for r in rows) > 0
    assert server.asked == [f"step-{s}" for s in range(STEPS + 1)]
    assert_serves_final(held, out)


def failing_run(out: Path, args: list[str]) -> tuple[int, str, float]:
    began = time.monotonic()
    proc = torchrun(out, args)
    output, _ = proc.communicate(timeout=300)
    return proc.returncode, output, time.monotonic() - began


def test_a_refused_reload_mid_run_stops_every_rank(root, stoppy_model_dir, tokenizer):
    server = serve(stoppy_model_dir, tokenizer, root)
    server.fail_version = "step-2"             # after step 2's update: rank 0 reloads, rank 1 waits for the outcome
    try:
        code, output, took = failing_run(root / "refused", overrides(stoppy_model_dir, server.url))
    finally:
        server.close()
    assert code != 0, output[-3000:]
    message = "longrl rl: error: rollout server, reloading"
    assert output.count(message) == 2 and "HTTP 400" in output and "disk full" in output, output[-3000:]
    assert [r["step"] for r in read_metrics(root / "refused" / "metrics.jsonl")] == [1]
    print(f"refused reload: both ranks stopped, {took:.1f} s in all")


def test_a_server_that_dies_mid_run_stops_every_rank_without_hanging(root, stoppy_model_dir, tokenizer):
    server = serve(stoppy_model_dir, tokenizer, root)
    out = root / "died"
    proc = torchrun(out, overrides(stoppy_model_dir, server.url))
    deadline = time.monotonic() + 300
    try:
        while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().strip():
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "no step within the time limit"
            time.sleep(0.05)
    finally:
        server.close()                          # the server goes away after step 1
    died = time.monotonic()
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, output[-3000:]
    assert output.count("longrl rl: error: rollout server") == 2, output[-3000:]
    assert "connection" in output, output[-3000:]
    assert time.monotonic() - died < 120          # retries are bounded (timeout_s x max_attempts), nothing waits forever
    print(f"server died: both ranks stopped {time.monotonic() - died:.1f} s later")


def test_a_request_failing_on_one_rank_stops_the_rank_that_sent_none(root, stoppy_model_dir, tokenizer):
    """One held-out item: rank 0 validates it, rank 1 has nothing to send. The server refuses rank 0's request;
    rank 1 must not wait for rank 0 in the next collective: both stop with rank 0's error."""
    server = serve(stoppy_model_dir, tokenizer, root)
    server.refuse_single_samples = True
    held_out = "data.eval=[{synth: {tasks: [docmath], n: 1, length: 200, seed: 1}}]"
    try:
        code, output, took = failing_run(root / "one-rank-fails", overrides(stoppy_model_dir, server.url, held_out,
                                                                             "train.eval_every=1"))
    finally:
        server.close()
    assert code != 0, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("longrl rl: error: rollout server")]
    assert len(errors) == 2 and all("n = 1 is not served today" in e and e.endswith("(rank 0 of 2)") for e in errors), \
        output[-3000:]
    assert not (root / "one-rank-fails" / "metrics.jsonl").exists() or \
        not read_metrics(root / "one-rank-fails" / "metrics.jsonl")
    print(f"one rank's request refused: both ranks stopped, {took:.1f} s in all")
