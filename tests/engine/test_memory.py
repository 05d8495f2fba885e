"""engine/memory.py and engine/plan.py: estimates against peaks measured on the CPU, and the plan's arithmetic.

The measured cases (`engine/memory_bench.py`) run the real work (a policy-update micro-batch, a
rollout, an SFT micro-batch) on small random models and count every tensor alive; the planner
must land within 25% of each peak, including on shapes its coefficients were not fitted on.
"""

from __future__ import annotations

import pytest
import torch

from longrl.engine.memory import GiB, Layout, rollout_memory, states, train_memory
from longrl.engine.memory_bench import cases, compare
from longrl.engine.plan import STEP, USABLE, PhaseSpec, plan_phase, update_estimate
from longrl.models.shapes import KNOWN, Shape

CHECKED = ["update fp32", "update fp32 ckpt", "update autocast ckpt, other shape", "update bf16 long answers, other shape",
           "rollout bf16, other shape", "sft autocast, other shape"]
R1_1P5B = Shape(**KNOWN["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"])


@pytest.mark.slow
@pytest.mark.parametrize("name", CHECKED)
def test_estimates_are_within_25_percent_of_measured_peaks(name):
    torch.set_num_threads(1)
    (case,) = [c for c in cases() if c.name == name]
    row = compare(case, torch.device("cpu"))
    print(row)
    assert 0.75 <= row["ratio"] <= 1.25, row


def test_known_shapes_have_their_published_sizes():
    sizes = {name: Shape(**spec).params / 1e9 for name, spec in KNOWN.items()}
    assert sizes["deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"] == pytest.approx(14.77, abs=0.01)
    assert sizes["deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"] == pytest.approx(32.76, abs=0.01)
    assert sizes["Qwen/Qwen2.5-0.5B-Instruct"] == pytest.approx(0.494, abs=0.001)


def test_sharding_divides_the_states_and_bf16_math_keeps_fp32_masters():
    one = states(R1_1P5B, Layout(gpus=1), reference=True)
    eight = states(R1_1P5B, Layout(gpus=8), reference=True)
    n = R1_1P5B.params
    assert one["weights"] == 4 * n and one["grads"] == 4 * n and one["optimizer"] == 8 * n and one["reference"] == 4 * n
    for part in ("weights", "grads", "optimizer", "reference"):
        assert eight[part] == pytest.approx(one[part] / 8)
    assert one["compute copies"] > 0 and eight["compute copies"] > 0        # autocast copies / gathered blocks


def test_checkpointing_keeps_far_less_and_completions_cost_more_than_prompts():
    layout = Layout(gpus=8)
    plain = train_memory(R1_1P5B, layout, 20000, 8000, 20000, False, 1024, False)
    ckpt = train_memory(R1_1P5B, layout, 20000, 8000, 20000, True, 1024, False)
    assert ckpt.parts["activations"] < plain.parts["activations"] / 10
    prompts = train_memory(R1_1P5B, layout, 20000, 1, 20000, False, 1024, False).parts["activations"]
    answers = train_memory(R1_1P5B, layout, 1, 20000, 1, False, 1024, False).parts["activations"]
    assert answers > prompts


def test_rollout_cache_holds_the_prompt_once_per_group():
    per_token = (4 + 2) * R1_1P5B.kv * R1_1P5B.layers        # K (RoPE'd under autocast: fp32) + V (bf16), all layers
    for g in (8, 16):
        kv = rollout_memory(R1_1P5B, Layout(gpus=1), 2000, 10000, g, 1, False).parts["rollout KV"]
        assert kv == per_token * (2000 + g * 10000)           # one prompt copy, G suffix buffers


def test_the_proposal_is_the_largest_budget_that_fits():
    spec = PhaseSpec("p", "rl", prompt_len=20000, response_len=8000, group_size=8, micro_batch_tokens=200000,
                     checkpointing=False, chunk_tokens=1024)
    plan = plan_phase(R1_1P5B, spec, Layout(gpus=1), gpu_memory_gib=80)
    assert not plan.fits
    budget, ckpt = plan.proposal["train.micro_batch_tokens"], plan.proposal["model.gradient_checkpointing"]
    assert ckpt is True and budget % STEP == 0 and budget >= 28000
    usable = USABLE * 80 * GiB
    assert update_estimate(R1_1P5B, spec, Layout(gpus=1), budget, True).total <= usable
    assert update_estimate(R1_1P5B, spec, Layout(gpus=1), budget + STEP, True).total > usable
    tiny = plan_phase(R1_1P5B, spec, Layout(gpus=1), gpu_memory_gib=20)
    assert not tiny.fits and tiny.proposal == {}                             # nothing fits 20 GiB


@pytest.mark.gpu
def test_estimates_are_within_25_percent_of_cuda_peaks():
    rows = [compare(case, torch.device("cuda")) for case in cases()]
    for row in rows:
        print(row)
    assert all(0.75 <= row["ratio"] <= 1.25 for row in rows), rows
