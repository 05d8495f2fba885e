"""engine/memory.py and engine/plan.py: estimates against peaks measured on the CPU, and the plan's arithmetic.

The measured cases (`engine/memory_bench.py`) run the real work (a policy-update micro-batch, a
rollout, an SFT micro-batch) on small random models and count every tensor alive; the planner
must land within 25% of each peak, including on shapes its coefficients were not fitted on.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from longrl.engine.memory import (
    GiB,
    Layout,
    all_to_all,
    host_states,
    optimizer_step,
    per_rank,
    rollout_memory,
    sft_memory,
    states,
    train_memory,
)
from longrl.engine.memory_bench import cases, compare
from longrl.engine.plan import STEP, USABLE, PhaseSpec, check_sequence_parallel, plan_phase, update_estimate
from longrl.errors import ConfigError
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


R1_32B = Shape(**KNOWN["deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"])


def test_offloaded_parameters_leave_only_the_staged_layers_on_the_gpu_and_the_rest_on_the_host():
    n, w = R1_32B.params, 32
    kept = states(R1_32B, Layout(gpus=w), reference=True)
    gone = states(R1_32B, Layout(gpus=w, offload_params=True, offload_optimizer=True), reference=True)
    assert gone["weights"] == gone["grads"] == gone["optimizer"] == gone["reference"] == 0
    staged = 4 * (R1_32B.root_params + 2 * R1_32B.layer_params) / w * 3     # fp32 shards of params, grads, reference
    assert gone["compute copies"] == pytest.approx(kept["compute copies"] + staged)
    # host: fp32 weights 4 + grads 4 + AdamW 8 bytes a parameter, the reference 4: 20 x 32.76e9 / 32 bytes a rank
    assert host_states(R1_32B, Layout(gpus=w, offload_params=True, offload_optimizer=True), True) == 20 * n / w
    assert host_states(R1_32B, Layout(gpus=w), True) == 0
    assert Layout(gpus=1, offload_params=True, offload_optimizer=True).sharded        # offload means FSDP2
    assert optimizer_step(R1_32B, Layout(gpus=w, offload_params=True, offload_optimizer=True), True).total == 0


def test_optimizer_offload_alone_moves_the_moments_and_plans_their_visit_for_the_step():
    n, w = R1_1P5B.params, 8
    layout = Layout(gpus=w, offload_optimizer=True)
    parts = states(R1_1P5B, layout, reference=False)
    assert parts["optimizer"] == 0 and parts["weights"] == 4 * n / w and parts["grads"] == 4 * n / w
    assert host_states(R1_1P5B, layout, False) == 8 * n / w
    assert optimizer_step(R1_1P5B, layout, False).total == 16 * n / w                # weights + grads + moments
    # one rank (torchrun --nproc_per_node 1) and a tiny micro-batch: the step is the peak, and the estimate its total
    tiny = train_memory(R1_1P5B, Layout(gpus=1, offload_optimizer=True), 16, 16, 16, True, 16, False)
    assert tiny.total == pytest.approx(16 * n) and tiny.parts["optimizer step"] > 0
    big = train_memory(R1_1P5B, layout, 20000, 8000, 20000, True, 1024, False)
    assert "optimizer step" not in big.parts


def test_sequence_parallel_divides_a_micro_batch_and_adds_all_to_all_buffers():
    plain, split = Layout(gpus=8), Layout(gpus=8, sp=8)
    whole = train_memory(R1_32B, split, 60000, 13728, 60000, True, 1024, False)
    share = train_memory(R1_32B, plain, 7500, 1716, 60000, True, 1024, False)      # 60000 / 8, 13728 / 8
    for part in ("activations", "recompute", "block gradients", "weights", "grads", "optimizer"):
        assert whole.parts[part] == share.parts[part], part
    # each rank's q, k, v and output (2 x 5120 + 2 x 1024 wide, bf16), sent and received, for its 7,500 prompt tokens
    assert all_to_all(R1_32B, split, 7500) == 2 * 7500 * (2 * 5120 + 2 * 1024) * 2
    assert whole.parts["all-to-all"] == all_to_all(R1_32B, split, 7500) and all_to_all(R1_32B, plain, 7500) == 0
    assert per_rank(73728, split) == 9216 and per_rank(10, Layout(sp=4)) == 3
    sft = sft_memory(R1_32B, split, 65536, 65536, True, 256.0)
    assert sft.parts["activations"] == sft_memory(R1_32B, plain, 8192, 8192, True, 256.0).parts["activations"]


def test_a_server_rollout_keeps_only_the_trainers_resident_states():
    spec = PhaseSpec("p", "rl", prompt_len=60000, response_len=10000, group_size=8, micro_batch_tokens=73728,
                     checkpointing=True, chunk_tokens=1024, sp=8, offload_params=True, offload_optimizer=True,
                     server=True)
    plan = plan_phase(R1_32B, spec, Layout(gpus=32), gpu_memory_gib=80)
    assert plan.fits and plan.rollout.total == 0 and plan.host == 16 * R1_32B.params / 32
    engine = plan_phase(R1_32B, replace(spec, server=False), Layout(gpus=32), gpu_memory_gib=80)
    assert not engine.fits and engine.update.total == plan.update.total
    assert engine.rollout.parts["compute copies"] == 2 * R1_32B.params                # the full bf16 weights


def test_sequence_parallel_must_divide_the_world_and_the_heads():
    check_sequence_parallel(8, 32, 40, "train.sequence_parallel")
    with pytest.raises(ConfigError, match="train.sequence_parallel=8: the 12 ranks"):
        check_sequence_parallel(8, 12, 40, "train.sequence_parallel")
    with pytest.raises(ConfigError, match="sft.sequence_parallel=16: the model's 40 attention heads"):
        check_sequence_parallel(16, 32, 40, "sft.sequence_parallel")
