"""The shipped QwenLong-L1 recipes carry the official script's settings where it is explicit.

The official script is `scripts/rl_4nodes_dapo.sh` of github.com/Tongyi-Zhiwen/QwenLong-L1 (commit 38d0806),
read with the defaults of its verl fork (`verl/verl/trainer/config/ppo_trainer.yaml`) where it sets nothing.
Each entry below names the script's setting it mirrors.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from longrl.config import load_config
from longrl.curriculum.phases import phase_steps, prompts_per_round

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = ["qwenlong_l1_1p5b.yaml", "qwenlong_l1_14b.yaml", "qwenlong_l1_32b.yaml"]

OFFICIAL = {
    "rollout.group_size": 8,                  # actor_rollout_ref.rollout.n=8
    "rollout.temperature": 0.7,               # rollout.temperature=0.7
    "rollout.top_p": 0.95,                    # rollout.top_p=0.95
    "rollout.top_k": 0,                       # rollout.top_k=-1 (off)
    "rollout.max_new_tokens": 10000,          # data.max_response_length=10000
    "rollout.validation.n": 1,                # rollout.val_kwargs.n=1
    "rollout.validation.temperature": 0.7,    # rollout.val_kwargs.temperature=0.7
    "rollout.validation.top_p": 0.95,         # rollout.val_kwargs.top_p=0.95
    "algo.advantage": "grpo",                 # algorithm.adv_estimator=grpo
    "algo.loss_agg": "token-mean",            # actor.use_token_level_loss=True
    "algo.clip_eps_low": 0.2,                 # actor.clip_ratio_low=0.2
    "algo.clip_eps_high": 0.2,                # actor.clip_ratio_high=0.2 (not DAPO's 0.28)
    "algo.kl_coef": 0.0,                      # actor.kl_loss_coef=0.000, algorithm.kl_ctrl.kl_coef=0.000
    "algo.entropy_coef": 0.001,               # actor.entropy_coeff (the fork's default, kept by the script)
    "algo.dynamic_sampling": True,            # algorithm.filter_groups.enable=True
    "algo.filter_metric": "accuracy",         # algorithm.filter_groups.metric=acc
    "algo.gen_prompts": 384,                  # data.gen_batch_size=384
    "algo.max_refills": 9,                    # algorithm.filter_groups.max_num_gen_batches=10 (first round + 9)
    "optim.lr": 2e-6,                         # actor.optim.lr=2e-6
    "optim.weight_decay": 0.01,               # actor.optim.weight_decay (fork default)
    "optim.grad_clip": 1.0,                   # actor.grad_clip (fork default)
    "optim.schedule": "constant",             # actor.optim.warmup_style=constant (fork default)
    "optim.warmup_steps": 0,                  # actor.optim.lr_warmup_steps_ratio=0 (fork default)
    "train.prompts_per_step": 128,            # data.train_batch_size=128
    "train.ppo_epochs": 1,                    # actor.ppo_epochs=1
    "train.mini_batches": 4,                  # actor.ppo_mini_batch_size=32 prompts: 128 / 32
    "train.eval_every": 5,                    # trainer.test_freq=5
    "train.eval_before_train": True,          # +trainer.val_before_train=True
    "reward.overlong.enabled": True,          # custom_reward_function.overlong_buffer.enable=True
    "reward.overlong.buffer": 1000,           # custom_reward_function.overlong_buffer.len=1000
    "reward.judge.model": "Qwen/Qwen2.5-1.5B-Instruct",  # README: VERIFIER_PATH, served by vllm
    "reward.judge.temperature": 0.0,          # docqa.py: call_oai_rm_llm(temperature=0.0)
    "model.gradient_checkpointing": True,     # model.enable_gradient_checkpointing=True
    "run.save_every": 5,                      # trainer.save_freq=5
    "eval.max_input_tokens": 120000,          # eval/*.py: MAX_INPUT_LEN=120000
    "eval.max_new_tokens": 10000,             # eval/*.py: MAX_OUTPUT_LEN=10000
    "eval.temperature": 0.7,                  # eval/*.py: temperature=0.7
    "eval.top_p": 0.95,                       # eval/*.py: top_p=0.95
}


def dotted(cfg, key):
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_has_the_official_script_settings(recipe):
    cfg = load_config(CONFIGS / recipe)
    wrong = {key: dotted(cfg, key) for key, want in OFFICIAL.items() if dotted(cfg, key) != want}
    assert not wrong, f"{recipe} differs from the official script: {wrong}"


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_phases_validation_data_and_generation_rounds(recipe):
    cfg = load_config(CONFIGS / recipe)
    phases = cfg.curriculum.phases
    # the paper's two phases (20K, then 60K input), in the script's units: max_prompt_length=60000,
    # max_response_length=10000
    assert [(p.max_input_tokens, p.max_response_tokens) for p in phases] == [(20000, 10000), (60000, 10000)]
    # data.val_files: DocQA-RL-1.6K's held-out test split, imported beside the training file
    assert [s.path for s in cfg.data.eval] == ["data/docqa_rl_test.jsonl"]
    assert all([s.path for s in p.data] == ["data/docqa_rl.jsonl"] for p in phases)
    # a step draws rounds of 384 prompts, at most 10 of them; a phase's epochs count those rounds, as verl's
    # total_epochs do (30 in the script's one stage: 15 per phase here)
    assert prompts_per_round(cfg) == 384 and cfg.algo.max_refills + 1 == 10
    assert sum(p.epochs for p in phases) == 30 and phase_steps(phases[1], 1600, prompts_per_round(cfg, phases[1])) == 63


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_says_where_its_numbers_come_from(recipe):
    text = (CONFIGS / recipe).read_text()
    assert "scripts/rl_4nodes_dapo.sh" in text and "arXiv 2505.17667" in text
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#") or " # " in line]
    for label in ("official script", "paper", "longrl's choice"):
        assert sum(label in line for line in comments) >= 3, f"{recipe}: few settings labelled {label!r}"


def test_the_real_model_recipe_holds_the_documented_run():
    """configs/real_smollm2.yaml: SmolLM2 by name, SFT -> RL at 512 then 1,024 tokens with retrospective
    sampling -> base, SFT and RL evaluated on 300 held-out items at 1,024 tokens, seeds disjoint from training."""
    cfg = load_config(CONFIGS / "real_smollm2.yaml")
    assert cfg.model.path == "builtin:smollm2-135m" and cfg.sft.data and cfg.reward.require_think
    lengths = [p.data[0].synth.length for p in cfg.curriculum.phases]
    assert lengths == [512, 1024] and cfg.curriculum.retrospective.mode == "online"
    assert [p.steps for p in cfg.curriculum.phases] == [16, 8] and cfg.train.prompts_per_step == 8
    assert cfg.optim.lr == 3e-5 and cfg.eval.dtype == "bfloat16" and cfg.model.dtype == "float32"
    assert cfg.eval.benchmarks == ["synthetic-1024"] and cfg.eval.synthetic.n >= 300 and cfg.eval.include_base
    train_seeds = {s.synth.seed for s in cfg.sft.data} | {p.data[0].synth.seed for p in cfg.curriculum.phases}
    assert cfg.eval.synthetic.seed not in train_seeds
    longest = max(s.synth.length for s in cfg.sft.data)
    assert all(p.max_input_tokens >= 1.1 * p.data[0].synth.length for p in cfg.curriculum.phases) and longest <= 512


def test_the_32b_recipe_has_the_official_scripts_shape_and_the_14b_what_fits_one_node():
    big = load_config(CONFIGS / "qwenlong_l1_32b.yaml")
    # ulysses_sequence_parallel_size=8; actor param_offload=True, optimizer_offload=True; vLLM rollouts (TP 4)
    assert big.train.sequence_parallel == 8 and big.train.offload.params and big.train.offload.optimizer
    assert big.rollout.backend == "server" and big.rollout.server.reload_api == "vllm"
    assert big.sft.sequence_parallel == 8 and big.sft.offload.params and big.sft.offload.optimizer
    text = (CONFIGS / "qwenlong_l1_32b.yaml").read_text()
    assert "--gpus 32 --gpu-memory-gib 80" in text and "4 nodes x 8 GPUs of 80 GB" in text
    small = load_config(CONFIGS / "qwenlong_l1_14b.yaml")   # longrl's choice: what `longrl plan` fits on 8 x 80 GB
    assert small.train.sequence_parallel == 4 and small.train.offload.optimizer and not small.train.offload.params
    assert small.sft.sequence_parallel == 4 and small.sft.offload.optimizer and small.rollout.backend == "engine"
    assert "--gpus 8 --gpu-memory-gib 80" in (CONFIGS / "qwenlong_l1_14b.yaml").read_text()
