"""engine/offload.py: CPU offload of FSDP2 shards and of AdamW's state, its refusals, and equal results.

On CPU (gloo) the "device" already is the CPU, so the torchrun test checks that the policy is applied
(FSDP2's CPUOffloadPolicy on every sharded group, parameters and optimizer state on the CPU, the
optimizer-only hooks installed) and that the weights equal those of the same steps without offload.
The GPU test checks where the parameters are between steps and during the forward.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from longrl.cli import main
from longrl.config import load_config
from longrl.config.model import ModelConfig, OffloadConfig
from longrl.engine.distributed import SINGLE
from longrl.engine.offload import (
    check_offload,
    keep_optimizer_state_on_cpu,
    move_optimizer_state,
    park,
    state_devices,
)
from longrl.engine.sharding import load_trainable
from longrl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128, "max_position_embeddings": 4096}
BOTH = OffloadConfig(params=True, optimizer=True)


def stepped_optimizer() -> torch.optim.AdamW:
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([w], lr=0.1)
    w.grad = torch.full((3,), 0.5)
    opt.step()
    return opt


def test_params_without_optimizer_is_refused_naming_the_key(capsys):
    with pytest.raises(ConfigError, match="train.offload.*optimizer=true"):
        load_config(SMOKE, ["train.offload.params=true"])
    assert load_config(SMOKE, ["train.offload.params=true", "train.offload.optimizer=true"]).train.offload == BOTH
    assert main(["validate", "--config", SMOKE, "sft.offload={params: true}"]) == 2
    assert "sft.offload" in capsys.readouterr().err


def test_offload_on_one_process_is_a_clear_error(tmp_path, capsys):
    check_offload(None, SINGLE, "train.offload")
    check_offload(OffloadConfig(), SINGLE, "train.offload")                     # nothing asked: nothing to refuse
    with pytest.raises(ConfigError, match=r"sft.offload: .*torchrun --nproc_per_node N"):
        load_trainable(ModelConfig(path="random", tiny=TINY), SINGLE, torch.device("cpu"), BOTH, "sft.offload")
    status = main(["rl", "--config", SMOKE, "--out", str(tmp_path / "run"), "train.offload.optimizer=true",
                   "run.progress=none"])
    assert status == 2 and "train.offload: CPU offload moves FSDP2 shards" in capsys.readouterr().err


def test_moving_the_optimizer_state_moves_every_moment_but_not_the_step_count():
    opt = stepped_optimizer()
    assert state_devices(opt) == {"cpu"}
    move_optimizer_state(opt, lambda param: torch.device("meta"))             # any device other than the CPU
    (state,) = opt.state.values()
    assert state["exp_avg"].is_meta and state["exp_avg_sq"].is_meta and state["step"].device.type == "cpu"
    assert state_devices(opt) == {"meta"}
    opt = stepped_optimizer()
    before = {k: v.clone() for k, v in opt.state[opt.param_groups[0]["params"][0]].items()}
    park(opt)                                                                  # already there: the same values
    after = opt.state[opt.param_groups[0]["params"][0]]
    assert all(torch.equal(before[k], after[k]) for k in before) and state_devices(opt) == {"cpu"}


def test_optimizer_only_offload_hooks_the_step_and_gives_the_same_update():
    plain, hooked = stepped_optimizer(), stepped_optimizer()
    assert keep_optimizer_state_on_cpu(hooked, OffloadConfig(optimizer=True))
    assert not keep_optimizer_state_on_cpu(stepped_optimizer(), BOTH)       # FSDP2 keeps that state on the CPU
    assert not keep_optimizer_state_on_cpu(stepped_optimizer(), OffloadConfig())
    assert len(hooked._optimizer_step_pre_hooks) == 1 and len(hooked._optimizer_step_post_hooks) == 1
    for opt in (plain, hooked):
        (w,) = opt.param_groups[0]["params"]
        w.grad = torch.full((3,), -0.25)
        opt.step()
    assert torch.equal(plain.param_groups[0]["params"][0], hooked.param_groups[0]["params"][0])
    assert state_devices(hooked) == {"cpu"}


SCRIPT = """
import json, sys, torch
from longrl.config.model import ModelConfig, OffloadConfig
from longrl.engine.distributed import setup, shutdown
from longrl.engine.logprobs import completion_stats
from longrl.engine.offload import keep_optimizer_state_on_cpu, offloaded_params, state_devices
from longrl.engine.sharding import clip_grad_norm, full_weights

torch.set_num_threads(1)
dist, device = setup(sys.argv[2])
cfg = ModelConfig(path="random", tiny=json.loads(sys.argv[1]), dtype=sys.argv[3])
modes = {"none": None, "both": OffloadConfig(params=True, optimizer=True), "optimizer": OffloadConfig(optimizer=True)}
report = {}
for name, offload in modes.items():
    from longrl.engine.sharding import load_trainable
    model = load_trainable(cfg, dist, device, offload)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    hooked = keep_optimizer_state_on_cpu(opt, offload)
    gen = torch.Generator().manual_seed(dist.rank)
    seen = []
    layer = model.model.layers[0].mlp.up_proj
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.device.type))
    for step in range(3):
        prompts = [torch.randint(3, 500, (12,), generator=gen).tolist()]
        comps = [[torch.randint(3, 500, (5,), generator=gen).tolist(), torch.randint(3, 500, (3,), generator=gen).tolist()]]
        loss = completion_stats(model, prompts, comps).logprobs.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(params, 1.0)
        opt.step()
    handle.remove()
    weights = full_weights(model, lambda t: t.float().cpu(), dist)
    report[name] = {"offloaded": offloaded_params(model), "hooked": hooked,
                    "param_devices": sorted({p.device.type for p in model.parameters()}),
                    "state_devices": sorted(state_devices(opt)), "forward_devices": sorted(set(seen)),
                    "weights": {k: v.flatten().tolist() for k, v in weights.items()}}
if dist.is_main:
    json.dump(report, open(sys.argv[4], "w"))
shutdown()
"""


def run_script(tmp_path: Path, device: str, dtype: str, nproc: int = 2) -> dict:
    script, out = tmp_path / "offload_steps.py", tmp_path / "report.json"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(script),
           json.dumps(TINY), device, dtype, str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


def largest_relative_difference(a: dict, b: dict) -> float:
    assert a and set(a) <= set(b)
    diffs = []
    for k in a:
        x, y = torch.tensor(a[k]), torch.tensor(b[k])
        diffs.append(float((x - y).norm() / y.norm().clamp_min(1e-12)))
    return max(diffs)


@pytest.mark.slow
def test_two_gloo_ranks_apply_the_policy_and_end_with_the_weights_of_no_offload(tmp_path):
    report = run_script(tmp_path, "cpu", "float32")
    none, both, opt_only = report["none"], report["both"], report["optimizer"]
    assert both["offloaded"] and not none["offloaded"] and not opt_only["offloaded"]  # CPUOffloadPolicy on every group
    assert both["param_devices"] == ["cpu"] and both["state_devices"] == ["cpu"] and not both["hooked"]
    assert opt_only["hooked"] and opt_only["state_devices"] == ["cpu"]
    start = load_trainable(ModelConfig(path="random", tiny=TINY), SINGLE, torch.device("cpu"))
    initial = {k: v.detach().flatten().tolist() for k, v in start.state_dict().items() if k in none["weights"]}
    assert largest_relative_difference(initial, none["weights"]) > 1e-3                # the steps moved the weights
    diffs = [largest_relative_difference(other["weights"], none["weights"]) for other in (both, opt_only)]
    print(f"offload vs none, relative difference of weights after 3 steps: both {diffs[0]:.1e}, optimizer {diffs[1]:.1e}")
    assert max(diffs) <= 1e-6


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_offloaded_params_sit_on_the_cpu_between_steps_and_on_cuda_in_forward(tmp_path):
    report = run_script(tmp_path, "cuda", "bfloat16", nproc=1)
    both, none, opt_only = report["both"], report["none"], report["optimizer"]
    assert both["offloaded"] and both["param_devices"] == ["cpu"] and both["forward_devices"] == ["cuda"]
    assert both["state_devices"] == ["cpu"] and none["param_devices"] == ["cuda"] and none["state_devices"] == ["cuda"]
    assert opt_only["param_devices"] == ["cuda"] and opt_only["state_devices"] == ["cpu"]
    for other in (both, opt_only):        # bf16 math: the same math in another place, not bit-equal sums
        assert largest_relative_difference(other["weights"], none["weights"]) <= 1e-3
