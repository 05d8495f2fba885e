"""rl/trainer.py on the tiny model: one-step smoke, exact resume, skipped updates, exact micro-batching.

Rewards come from real code paths only: the tiny policy here cannot answer, so the tests give it
several end-of-response tokens (a generation config with a list of eos ids, as many released models
have) and enable DAPO overlong shaping over the whole response, which makes rewards depend on length.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longrl.cli import main
from longrl.config import load_config
from longrl.rl.groups import Group
from longrl.rl.trainer import lr_factor, train
from longrl.rl.update import objective, policy_update
from longrl.tracking import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.yaml"
REQUIRED_KEYS = [
    "step", "phase", "reward/mean", "reward/std", "accuracy", "entropy", "kl", "response_len/mean", "response_len/max",
    "truncated_frac", "filtered_groups_frac", "tokens_per_s", "time/rollout", "time/reward", "time/update",
    "loss/policy", "loss/total", "loss/clip_frac", "optim/grad_norm", "optim/lr", "rollout/refills",
    "response_len/min", "rollout/prompt_len_max", "reward/max", "reward/min", "loss/clip_frac_low", "loss/clip_frac_high",
    "advantage/mean", "advantage/max", "advantage/min",
]


def config(model_dir, *overrides):
    base = [f"model.path={model_dir}", "run.progress=none", "run.torch_threads=1", "reward.overlong.buffer=16",
            "rollout.max_new_tokens=16", "rollout.group_size=4", "train.prompts_per_step=3", "algo.dynamic_sampling=true",
            "algo.filter_metric=reward",   # the tiny policy is never right: only the shaped reward varies
            "algo.max_refills=2", "train.micro_batch_tokens=300"]
    return load_config(SMOKE, base + list(overrides))


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final" / "model.safetensors"))


def stable(rows):
    """Metrics without wall-clock figures."""
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k != "tokens_per_s"} for r in rows]


def test_lr_factor_schedules():
    assert [lr_factor(s, 10, 3, "constant") for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(3, 13, 3, "cosine") == 1.0 and lr_factor(8, 13, 3, "cosine") == pytest.approx(0.5)
    assert lr_factor(0, 4, 0, "linear") == 1.0 and lr_factor(2, 4, 0, "linear") == 0.5


def test_one_step_changes_every_parameter_and_logs_expected_keys(tmp_path, stoppy_model_dir, samples):
    from longrl.models.loading import load_policy

    cfg = config(stoppy_model_dir, "train.steps=1", "optim.weight_decay=0", "optim.warmup_steps=0", "algo.kl_coef=0.01",
                 "run.dump_samples_every=1")
    final = train(cfg, tmp_path / "run", items=samples, phase="p1")
    before = dict(load_policy(cfg.model).named_parameters())
    after = weights(tmp_path / "run")
    assert set(before) <= set(after)
    unchanged = [name for name, p in before.items() if torch.equal(p.detach(), after[name])]
    assert unchanged == []  # weight decay is off: every tensor moved by its gradient
    (row,) = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [k for k in REQUIRED_KEYS if k not in row] == []
    assert row["step"] == 1 and row["phase"] == "p1" and row["update/skipped"] == 0.0
    assert row["reward/std"] > 0 and row["loss/clip_frac"] == 0.0   # one update: ratio is exactly 1
    assert (final / "config.json").exists() and (final / "tokenizer.json").exists()
    scores = read_metrics(tmp_path / "run" / "item_scores.jsonl")
    assert len(scores) == row["rollout/groups"] and all(len(s["rewards"]) == 4 and s["phase"] == "p1" for s in scores)
    dumped = (tmp_path / "run" / "samples" / "step-00000001.jsonl").read_text().splitlines()
    assert len(dumped) == 4 * len(scores) and {"id", "response", "reward", "prediction"} <= set(json.loads(dumped[0]))


def test_resume_after_two_steps_is_bit_identical_to_four_straight(tmp_path, stoppy_model_dir, samples):
    cfg = config(stoppy_model_dir, "train.steps=4", "run.save_every=2", "train.mini_batches=2", "algo.kl_coef=0.01")
    straight = tmp_path / "straight"
    train(cfg, straight, items=samples)

    # Same run, then forget everything after the step-2 checkpoint (a kill just before step 4's save):
    # metrics and item scores of steps 3-4 are on disk and must be dropped on resume.
    resumed = tmp_path / "resumed"
    train(cfg, resumed, items=samples)
    import shutil

    shutil.rmtree(resumed / "final")
    shutil.rmtree(resumed / "checkpoints" / "step-00000004")
    assert [r["step"] for r in read_metrics(resumed / "metrics.jsonl")] == [1, 2, 3, 4]
    train(cfg, resumed, items=samples)

    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert stable(read_metrics(resumed / "metrics.jsonl")) == stable(read_metrics(straight / "metrics.jsonl"))
    assert read_metrics(resumed / "item_scores.jsonl") == read_metrics(straight / "item_scores.jsonl")
    rows = read_metrics(straight / "metrics.jsonl")
    assert sum(r["optim/updates"] for r in rows) > 4          # two mini-batches: old log-probs recomputed
    for r in rows:                                            # the clip fraction split by side adds up
        assert r["loss/clip_frac_low"] + r["loss/clip_frac_high"] == pytest.approx(r["loss/clip_frac"])
        assert r["advantage/min"] <= r["advantage/mean"] <= r["advantage/max"]
        assert r["response_len/min"] <= r["response_len/mean"] <= r["response_len/max"]
    # A finished run returns at once and changes nothing.
    before = (straight / "metrics.jsonl").read_text()
    assert train(cfg, straight, items=samples) == straight / "final"
    assert (straight / "metrics.jsonl").read_text() == before


@pytest.mark.slow
def test_learning_signal_reward_rises(tmp_path, stoppy_model_dir, samples):
    # Reward = overlong penalty over the whole response (-length / 16): the policy must learn to end early.
    cfg = config(stoppy_model_dir, "train.steps=20", "optim.lr=1e-2", "optim.warmup_steps=0", "rollout.group_size=8",
                 "train.prompts_per_step=4", "algo.entropy_coef=0", "algo.track_kl=false", "run.save_every=100",
                 "run.dump_samples_every=0")
    train(cfg, tmp_path / "run", items=samples)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    first, last = rows[:4], rows[-4:]
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    assert mean(last, "reward/mean") > mean(first, "reward/mean") + 0.3
    assert mean(last, "response_len/mean") < 0.5 * mean(first, "response_len/mean")


def test_no_informative_group_skips_the_update_without_crashing(tmp_path, samples):
    # A plain random model never stops within 8 tokens: every reward is 0, every group uniform.
    cfg = config("random", "train.steps=2", "reward.overlong.enabled=false", "rollout.max_new_tokens=8",
                 "algo.max_refills=1", "run.save_every=1")
    train(cfg, tmp_path / "run", items=samples)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["update/skipped"] for r in rows] == [1.0, 1.0]
    assert [r["rollout/refills"] for r in rows] == [1.0, 1.0] and rows[0]["filtered_groups_frac"] == 1.0
    assert rows[0]["loss/total"] is None and rows[0]["reward/mean"] == 0.0
    assert len(read_metrics(tmp_path / "run" / "item_scores.jsonl")) == 2 * 6  # 3 + 3 refilled, per step


def test_generation_rounds_of_algo_gen_prompts_reach_the_trainer(tmp_path, samples):
    # Every group uniform (as above): each step draws rounds of gen_prompts = 5, not prompts_per_step = 3.
    cfg = config("random", "train.steps=1", "reward.overlong.enabled=false", "rollout.max_new_tokens=8",
                 "algo.max_refills=1", "algo.gen_prompts=5")
    train(cfg, tmp_path / "run", items=samples)
    row = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert row["rollout/groups"] == 10 and row["rollout/refills"] == 1.0
    assert len(read_metrics(tmp_path / "run" / "item_scores.jsonl")) == 10


def test_policy_update_is_the_same_for_any_micro_batch_budget(stoppy_model_dir, samples, tokenizer):
    from longrl.data.prompt import encode_prompt
    from longrl.models.loading import load_policy
    from longrl.rl.sampler import Draw

    g = torch.Generator().manual_seed(0)
    groups = []
    for i, s in enumerate(samples[:3]):
        comps = [torch.randint(5, 1000, (int(n),), generator=g).tolist() for n in torch.randint(1, 12, (4,), generator=g)]
        groups.append(Group(Draw(i, s), encode_prompt(tokenizer, s).ids, comps, [False] * 4, [""] * 4, [], [0.0] * 4))
    adv = torch.randn(3, 4, generator=g)

    def update(budget, agg):
        """Loss metrics and the parameter change of one update. Plain SGD at lr 1 makes the change the
        (clipped) gradient itself: AdamW would turn float-noise gradient differences into sign-sized steps."""
        cfg = config(stoppy_model_dir, f"train.micro_batch_tokens={budget}", f"algo.loss_agg={agg}", "train.mini_batches=1",
                     "algo.entropy_coef=0.01")
        policy = load_policy(cfg.model)
        before = {k: v.detach().clone() for k, v in policy.named_parameters()}
        optimizer = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=1.0)
        metrics = policy_update(policy, None, optimizer, groups, adv, cfg, objective(cfg), step=1)
        return metrics, {k: (v.detach() - before[k]) for k, v in policy.named_parameters()}

    for agg in ["token-mean", "seq-mean-token-mean"]:
        m_big, big = update(100_000, agg)
        m_small, small = update(220, agg)
        assert m_big["loss/total"] == pytest.approx(m_small["loss/total"], rel=1e-5)
        assert m_big["optim/grad_norm"] == pytest.approx(m_small["optim/grad_norm"], rel=1e-5)
        assert sum(float(d.abs().sum()) for d in big.values()) > 0          # the update did move the weights
        for name in big:
            torch.testing.assert_close(big[name], small[name], rtol=1e-4, atol=1e-7)


def test_cli_runs_smoke_config_with_overrides(tmp_path, stoppy_model_dir):
    out = tmp_path / "cli"
    args = ["rl", "--config", str(SMOKE), "--out", str(out), f"model.path={stoppy_model_dir}", "train.steps=1",
            "data.train.0.synth.n=3", "run.progress=none"]
    assert main(args) == 0
    assert (out / "final" / "model.safetensors").exists() and len(read_metrics(out / "metrics.jsonl")) == 1
    assert main(["rl", "--config", str(SMOKE), "--out", str(out), "algo.advantage=nope"]) == 2
    assert main(args[:-1] + ["train.steps=2"]) == 2                     # a different config on the same --out


def _launch(out: Path, overrides: list[str]) -> subprocess.Popen:
    env = {**os.environ, "LONGRL_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "-m", "longrl.cli", "rl", "--config", str(SMOKE), "--out", str(out), *overrides],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> bool:
    """SIGKILL `proc` as soon as `ready()` holds; False if it ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the run neither finished nor reached the kill point")


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_gives_identical_weights(tmp_path, stoppy_model_dir):
    overrides = [f"model.path={stoppy_model_dir}", "train.steps=5", "run.save_every=2", "data.train.0.synth.n=6",
                 "algo.dynamic_sampling=true", "rollout.max_new_tokens=16", "reward.overlong.buffer=16",
                 "run.progress=none"]
    straight = tmp_path / "straight"
    assert main(["rl", "--config", str(SMOKE), "--out", str(straight), *overrides]) == 0

    out = tmp_path / "killed"
    metrics = out / "metrics.jsonl"
    kill_points = [
        lambda: (out / "checkpoints" / "step-00000002" / "state.json").exists(),       # right after the first checkpoint
        lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 3,       # step 3 logged, not checkpointed
        lambda: (out / "item_scores.jsonl").exists()                                   # inside step 5, after its rollout
        and '"step": 5' in (out / "item_scores.jsonl").read_text(),
    ]
    killed = 0
    for ready in kill_points:
        proc = _launch(out, overrides)
        killed += _kill_when(proc, ready)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()[-2000:]
    assert killed >= 2  # each point is passed on the way; a starved poller may only miss one by arriving late
    assert main(["rl", "--config", str(SMOKE), "--out", str(out), *overrides]) == 0

    a, b = weights(straight), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in read_metrics(metrics)] == [1, 2, 3, 4, 5]
    assert stable(read_metrics(metrics)) == stable(read_metrics(straight / "metrics.jsonl"))
    assert read_metrics(out / "item_scores.jsonl") == read_metrics(straight / "item_scores.jsonl")


def test_dynamic_sampling_keeps_groups_by_accuracy_not_by_the_shaped_reward(samples):
    """DAPO filters on accuracy (0 < #correct < G): an all-wrong group whose lengths differ is uniform."""
    from longrl.config.reward import RewardConfig
    from longrl.rewards.hybrid import HybridReward, RewardInput
    from longrl.rl.dynamic import is_informative
    from longrl.rl.sampler import Draw
    from longrl.rl.trainer import FILTER_SIGNALS

    reward = HybridReward(RewardConfig(overlong={"enabled": True, "buffer": 8}))

    def group(answers: list[str]) -> Group:
        inputs = [RewardInput("multihop", "Who?", ["Tamo"], f"<think>x</think>Therefore, the answer is {a}.",
                              response_tokens=n, max_response_tokens=16) for a, n in zip(answers, (4, 10, 14, 16))]
        results = reward.score(inputs)
        return Group(Draw(0, samples[0]), [1], [[1]] * 4, [False] * 4, [""] * 4, results, [r.score for r in results])

    wrong = group(["Gire"] * 4)                      # all wrong, penalised by length: rewards differ
    assert is_informative(FILTER_SIGNALS["reward"](wrong)) and not is_informative(FILTER_SIGNALS["accuracy"](wrong))
    right = group(["Tamo"] * 4)                      # all right, penalised by length: solved K/K
    assert wrong.correct == [0.0] * 4 and right.correct == [1.0] * 4
    assert not is_informative(FILTER_SIGNALS["accuracy"](right))
    mixed = group(["Tamo", "Gire", "Tamo", "Gire"])
    assert is_informative(FILTER_SIGNALS["accuracy"](mixed))


def test_lora_run_trains_only_adapters_and_resumes_exactly(tmp_path, stoppy_model_dir, samples):
    from longrl.models.loading import load_policy

    lora = "model.lora={rank: 4, alpha: 8, target_modules: [q_proj, v_proj], final: adapter}"
    cfg = config(stoppy_model_dir, "train.steps=4", "run.save_every=2", "algo.kl_coef=0.05", "optim.lr=1e-2",
                 "train.mini_batches=1", lora)     # one update per step: step 1 sees the policy before any update
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(cfg, straight, items=samples)
    train(cfg, resumed, items=samples)
    import shutil

    shutil.rmtree(resumed / "final")
    shutil.rmtree(resumed / "checkpoints" / "step-00000004")
    train(cfg, resumed, items=samples)

    # checkpoints and final/ hold the adapters alone; resuming gives the same adapters, bit for bit
    (ckpt,) = [p for p in (straight / "checkpoints").iterdir() if p.name.endswith("4")]
    saved = load_file(str(ckpt / "trainable.safetensors"))
    assert not (ckpt / "model.safetensors").exists() and saved and all(".lora_" in k for k in saved)
    a = load_file(str(straight / "final" / "adapter_model.safetensors"))
    b = load_file(str(resumed / "final" / "adapter_model.safetensors"))
    assert sorted(a) == sorted(b) and len(a) == 2 * 2 * 2     # 2 layers x (q, v) x (A, B)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert stable(read_metrics(resumed / "metrics.jsonl")) == stable(read_metrics(straight / "metrics.jsonl"))
    # only the adapted layers differ from the base; the reference is the base (kl exactly 0 before any update)
    base = dict(load_policy(cfg.model).named_parameters())
    tuned = dict(load_policy(cfg.model.model_copy(update={"path": str(straight / "final")})).named_parameters())
    assert sorted(base) == sorted(tuned)
    changed = sorted(k for k in base if not torch.equal(base[k], tuned[k]))
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)
    rows = read_metrics(straight / "metrics.jsonl")
    assert rows[0]["kl"] == 0.0 and rows[-1]["kl"] > 0.0
