"""Mixed precision that learns: fp32 master weights and AdamW state, bf16 math (autocast on one device).

At the paper's learning rate (2e-6) an AdamW step moves a weight by about 2e-6; bf16 weights near
0.02 are spaced 8e-5 apart, so bf16 weights round most updates away. With fp32 master weights and
bf16 compute every trained parameter moves, in RL, SFT and pretraining alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longrl.cli import main
from longrl.config.model import ModelConfig
from longrl.engine.distributed import SINGLE
from longrl.engine.logprobs import completion_stats
from longrl.engine.sharding import prepare, run_forward
from longrl.errors import ConfigError
from longrl.models.loading import compute_dtype, load_policy

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
SHAPE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 128, "max_position_embeddings": 4096}      # smoke.yaml's model.tiny
TINY = json.dumps(SHAPE)                                                  # as an override (YAML reads JSON)


def trained_parameters(model) -> dict[str, torch.Tensor]:
    """name -> initial value of each parameter (tied ones once, as the safetensors file stores them)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def unchanged(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    assert set(before) <= set(after)
    return [k for k, v in before.items() if torch.equal(v.float(), after[k].float())]


def test_bf16_compute_runs_matmuls_in_bf16_and_keeps_fp32_weights(tiny_model):
    model = prepare(tiny_model, SINGLE, torch.bfloat16)
    seen = []
    handle = model.model.layers[0].mlp.up_proj.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    prompts, comps = [[5, 6, 7, 8]], [[[9, 10], [11]]]
    low = completion_stats(model, prompts, comps)
    handle.remove()
    assert seen == [torch.bfloat16, torch.bfloat16]                      # prompt pass + completions pass
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    exact = completion_stats(load_policy(ModelConfig(path="random", tiny=SHAPE)), prompts,
                             comps)
    assert torch.allclose(low.logprobs, exact.logprobs, atol=0.05) and not torch.equal(low.logprobs, exact.logprobs)
    assert run_forward(model, lambda m, x: torch.is_autocast_enabled("cpu") and x, 3) == 3


def test_compute_dtype_refuses_float16_and_reads_auto_from_the_checkpoint(tmp_path, tiny_model, tokenizer):
    from longrl.models.tiny import save_pretrained

    with pytest.raises(ConfigError, match="float16 cannot train"):
        compute_dtype(ModelConfig(path="random", dtype="float16"))
    save_pretrained(tiny_model.to(torch.bfloat16), tokenizer, tmp_path)
    assert compute_dtype(ModelConfig(path=str(tmp_path), dtype="auto")) == torch.bfloat16
    assert compute_dtype(ModelConfig(path=str(tmp_path), dtype="float32")) == torch.float32


def test_rl_in_bf16_compute_at_lr_2e6_updates_every_parameter(tmp_path):
    out = tmp_path / "rl"
    assert main(["rl", "--config", SMOKE, "--out", str(out), "model.dtype=bfloat16", "optim.lr=2e-6",
                 "optim.weight_decay=0", "optim.warmup_steps=0", "train.steps=1", "train.mini_batches=1",
                 "run.progress=none", "run.torch_threads=1"]) == 0
    before = trained_parameters(load_policy(ModelConfig(path="random", tiny=SHAPE)))
    after = load_file(str(out / "final" / "model.safetensors"))
    assert {v.dtype for v in after.values()} == {torch.float32}         # the master weights
    assert unchanged(before, after) == [] and len(before) == 26
    # Element by element: fp32 master weights keep (nearly) every update; rounded to bf16 most are gone.
    total = sum(v.numel() for v in before.values())
    kept = sum(int((after[k] != v).sum()) for k, v in before.items())
    rounded = sum(int((after[k].bfloat16() != v.bfloat16()).sum()) for k, v in before.items())
    print(f"updated elements: fp32 {kept}/{total}, after rounding to bf16 {rounded}/{total}")
    assert kept > 0.99 * total and rounded < 0.2 * total


def test_sft_in_bf16_compute_at_lr_2e6_updates_every_parameter(tmp_path):
    data = tmp_path / "demos.jsonl"
    assert main(["data", "synth", "--tasks", "multihop,docmath", "--n", "4", "--length", "200", "--out", str(data)]) == 0
    out = tmp_path / "sft"
    assert main(["sft", "--out", str(out), "model.path=random", f"model.tiny={TINY}", "model.dtype=bfloat16",
                 f"sft.data=[{{path: {data}}}]", "sft.steps=1", "sft.batch_tokens=1024", "sft.lr=2e-6",
                 "sft.weight_decay=0", "sft.eval_fraction=0", "run.progress=none", "run.torch_threads=1"]) == 0
    before = trained_parameters(load_policy(ModelConfig(path="random", tiny=SHAPE)))
    assert unchanged(before, load_file(str(out / "final" / "model.safetensors"))) == []


def test_pretraining_in_bf16_compute_at_lr_2e6_updates_every_parameter(tmp_path, tokenizer):
    from longrl.config import load_config
    from longrl.models.tiny import build_tiny_model

    arch = ("{hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, "
            "intermediate_size: 64, max_position_embeddings: 1024}")
    args = [f"pretrain.architecture={arch}", "pretrain.steps=1", "pretrain.batch_tokens=512", "pretrain.min_length=96",
            "pretrain.max_length=160", "pretrain.warmup_steps=0", "pretrain.eval_items=0", "pretrain.lr=2e-6",
            "pretrain.weight_decay=0", "pretrain.bf16_autocast=true", "pretrain.dtype_on_save=float32",
            "run.progress=none", "run.torch_threads=1"]
    out = tmp_path / "base"
    assert main(["pretrain", "--out", str(out), *args]) == 0
    before = trained_parameters(build_tiny_model(load_config(None, args).pretrain.architecture, tokenizer))
    assert unchanged(before, load_file(str(out / "final" / "model.safetensors"))) == []
