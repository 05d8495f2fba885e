"""RL with `rollout.backend: server` against `longrl serve` on loopback: the same run as in process,
the served weights follow every update (version and values), and a failing server stops a run that resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longrl.cli import main
from longrl.config import load_config
from longrl.engine.remote import RolloutServerError
from longrl.rl.trainer import train
from longrl.serve.server import ModelServer
from longrl.serve.worker import ModelWorker
from longrl.tracking import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"


class FlakyServer(ModelServer):
    """longrl serve whose reload of one version fails once (the outside world misbehaving)."""

    fail_version: str | None = None

    def reload(self, body):
        self.asked.append(body.get("weight_version"))
        if body.get("weight_version") == self.fail_version:
            self.fail_version = None
            return 400, {"success": False, "message": "disk full"}
        return super().reload(body)


@pytest.fixture()
def server(tiny_arch, tokenizer, tmp_path):
    """Serves the same architecture with other startup weights: only the trainer's publishing makes them right.
    It reloads from under tmp_path, where the runs write."""
    from longrl.models.tiny import build_tiny_model

    model = build_tiny_model(tiny_arch.model_copy(update={"init_seed": 7}), tokenizer)
    with FlakyServer(ModelWorker(model, tokenizer, "policy", "startup"), port=0, weights_root=tmp_path) as srv:
        srv.asked = []                                    # weight versions asked for, in order
        yield srv


def config(stoppy_model_dir, *overrides):
    base = [f"model.path={stoppy_model_dir}", "run.progress=none", "run.torch_threads=1", "reward.overlong.buffer=16",
            "rollout.max_new_tokens=16", "rollout.group_size=4", "train.prompts_per_step=3", "train.steps=3",
            "run.save_every=2", "train.micro_batch_tokens=300", "algo.kl_coef=0.01"]
    return load_config(SMOKE, base + list(overrides))


def server_overrides(url):
    return ["rollout.backend=server", f"rollout.server={{base_url: '{url}', api_key_env: null, timeout_s: 60, backoff_s: 0}}"]


def stable(rows):
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "weights/")) and k != "tokens_per_s"} for r in rows]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final" / "model.safetensors"))


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory, stoppy_model_dir, samples):
    out = tmp_path_factory.mktemp("engine") / "run"
    train(config(stoppy_model_dir), out, items=samples)
    return out


def test_server_rollouts_equal_in_process_rollouts(tmp_path, stoppy_model_dir, samples, server, engine_run):
    out = tmp_path / "run"
    train(config(stoppy_model_dir, *server_overrides(server.url)), out, items=samples)
    rows = read_metrics(out / "metrics.jsonl")
    # Token-exact rollouts from weights that follow every update: the same run, figure for figure.
    assert stable(rows) == stable(read_metrics(engine_run / "metrics.jsonl"))
    assert read_metrics(out / "item_scores.jsonl") == read_metrics(engine_run / "item_scores.jsonl")
    assert all(r["time/sync"] > 0 for r in rows)
    # One hand-over per step (step 1's also holds the first), in the served dtype: fp32 for this fp32 server.
    fp32_bytes = sum(t.numel() * 4 for t in weights(out).values())
    assert [r["weights/sync_bytes"] for r in rows] == [2 * fp32_bytes, fp32_bytes, fp32_bytes]
    assert all(r["weights/sync_s"] > 0 for r in rows)
    # A reload before the first rollout and after every update; the server ends with the final policy,
    # under the last step's version (named by the server: "step-3@<8 hex digits>"); only that folder is kept.
    assert server.asked == ["step-0", "step-1", "step-2", "step-3"] and server.worker.version.startswith("step-3@")
    final = weights(out)
    for name, tensor in server.worker.model.state_dict().items():
        assert torch.equal(tensor, final.get(name, tensor)), name
    assert sorted(p.name for p in (out / "served").iterdir()) == ["step-3"]
    assert final.keys() == weights(engine_run).keys() and all(torch.equal(final[k], weights(engine_run)[k]) for k in final)


def test_a_failed_reload_stops_the_run_and_a_rerun_resumes(tmp_path, stoppy_model_dir, samples, server, engine_run):
    cfg = config(stoppy_model_dir, *server_overrides(server.url))
    out = tmp_path / "run"
    server.fail_version = "step-3"                       # after step 3's update: step 2's checkpoint is on disk
    with pytest.raises(RolloutServerError, match=r"reloading .*step-3.*HTTP 400.*disk full"):
        train(cfg, out, items=samples)
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2] and not (out / "final").exists()
    train(cfg, out, items=samples)                        # publishes step 2's weights again, redoes step 3
    assert server.asked == ["step-0", "step-1", "step-2", "step-3", "step-2", "step-3"]
    assert server.worker.version.startswith("step-3@")
    assert stable(read_metrics(out / "metrics.jsonl")) == stable(read_metrics(engine_run / "metrics.jsonl"))
    a, b = weights(out), weights(engine_run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_server_that_is_down_exits_2_before_any_step(tmp_path, stoppy_model_dir, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    args = ["rl", "--config", str(SMOKE), "--out", str(tmp_path / "run"), f"model.path={stoppy_model_dir}", "run.progress=none",
            "rollout.backend=server", f"rollout.server={{base_url: '{url}', api_key_env: null, max_attempts: 1}}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "rollout server" in err and "connection error" in err and "update_weights_from_disk" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists() or not read_metrics(tmp_path / "run" / "metrics.jsonl")


def test_a_server_backend_needs_a_server_section():
    from longrl.errors import ConfigError

    with pytest.raises((ConfigError, ValueError), match="rollout.server"):
        load_config(SMOKE, ["rollout.backend=server"])
