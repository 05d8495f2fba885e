"""Loading any HF causal LM as the config says: dtype, attention, rope scaling, builtin and random."""

import pytest
import torch

from longrl.config.model import ModelConfig, TinyArchConfig
from longrl.errors import ConfigError
from longrl.models.loading import (
    load_policy,
    load_tokenizer,
    resolve_device,
    resolve_path,
)


def test_load_from_folder_with_overrides(tiny_model_dir):
    cfg = ModelConfig(path=str(tiny_model_dir), dtype="bfloat16", attn_implementation="eager",
                      rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096},
                      max_position_embeddings=16384)
    model = load_policy(cfg)
    assert model.dtype == torch.bfloat16 and model.config._attn_implementation == "eager"
    assert model.config.rope_parameters["rope_type"] == "yarn" and model.config.rope_parameters["factor"] == 4.0
    assert model.config.max_position_embeddings == 16384
    assert load_tokenizer(cfg).eos_token == "<|im_end|>"


def test_random_model_from_config():
    model = load_policy(ModelConfig(path="random", tiny=TinyArchConfig(hidden_size=32, num_hidden_layers=1, intermediate_size=64)))
    assert model.config.hidden_size == 32 and model.dtype == torch.float32


def test_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown builtin model 'builtin:nope'"):
        resolve_path("builtin:nope")
    with pytest.raises(ConfigError, match="cannot load model config"):
        load_policy(ModelConfig(path=str(tmp_path)))
    with pytest.raises(ConfigError, match="no CUDA device") if not torch.cuda.is_available() else pytest.raises(AssertionError):
        resolve_device("cuda")
        raise AssertionError
    assert resolve_device("cpu").type == "cpu"


def test_refuses_pickle_weights(tiny_model_dir, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    for f in folder.glob("*.safetensors"):
        f.unlink()
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ConfigError, match="safetensors only"):
        load_policy(ModelConfig(path=str(folder)))


def test_folders_without_tokenizer_or_with_cut_weights_are_config_errors(tiny_model_dir, tmp_path):
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"empty: no tokenizer files \(tokenizer.json, .*set model.tokenizer"):
        load_tokenizer(ModelConfig(path=str(empty)))
    folder = tmp_path / "cut"
    shutil.copytree(tiny_model_dir, folder)
    weights = next(folder.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ConfigError, match=r"cannot load model weights from .*cut': Error while deserializing header"):
        load_policy(ModelConfig(path=str(folder)))
    with pytest.raises(ConfigError, match=r"model.attn_implementation='nope': Specified `attn_implementation=\"nope\"` is not"):
        load_policy(ModelConfig(path="random", attn_implementation="nope"))


def test_rope_scaling_transformers_cannot_build_is_a_config_error(tiny_model_dir):
    with pytest.raises(ConfigError, match=r"model.rope_scaling: unknown rope_type 'nonsense'; known: default, dynamic"):
        load_policy(ModelConfig(path=str(tiny_model_dir), rope_scaling={"rope_type": "nonsense"}))
    with pytest.raises(ConfigError, match=r"model.rope_scaling: Missing required keys .*'yarn'"):
        load_policy(ModelConfig(path=str(tiny_model_dir), rope_scaling={"rope_type": "yarn"}))
    with pytest.raises(ValueError, match="apply to a loaded model, not path=random"):  # silently ignored before
        ModelConfig(path="random", rope_scaling={"rope_type": "yarn", "factor": 4.0})


@pytest.mark.parametrize("cut", ["empty file", "a layer removed", "the embeddings removed"])
def test_a_checkpoint_missing_tensors_is_an_error_naming_them(tiny_model_dir, tmp_path, cut):
    """Issue 25, case 5: transformers filled missing tensors with random values and only logged it."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    drop = {"empty file": "", "a layer removed": ".layers.0.", "the embeddings removed": "embed_tokens"}[cut]
    kept = {} if cut == "empty file" else {k: v for k, v in tensors.items() if drop not in k}
    assert len(kept) < len(tensors)
    save_file(kept, str(weights), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"m: incomplete weights \(\d+ tensor\(s\) the model needs are missing: ") as err:
        load_policy(ModelConfig(path=str(folder)))
    missing = [k for k in tensors if k not in kept]
    assert missing[0] in str(err.value) or "more)" in str(err.value)
    assert "never fills missing weights with random values" in str(err.value)
    assert load_policy(ModelConfig(path=str(tiny_model_dir))) is not None   # the complete folder still loads


def test_what_the_engine_cannot_compute_is_refused_at_load_before_a_run_directory(tmp_path, tokenizer, capsys):
    """A Gemma 2 (attention soft-capping, logits soft-capped after the head) used to fail at the first rollout,
    after the run directory was written; it is refused when it loads (exit 2), with nothing written."""
    from pathlib import Path

    from transformers import Gemma2Config, Gemma2ForCausalLM

    from longrl.cli import main
    from longrl.models.tiny import save_pretrained

    config = Gemma2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
                          pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    save_pretrained(Gemma2ForCausalLM(config), tokenizer, tmp_path / "gemma2")
    with pytest.raises(ConfigError, match=r"\(gemma2\): longrl's engine does not implement attention soft-capping "
                                          r"\(attn_logit_softcapping=50.0\); logits changed after the LM head"):
        load_policy(ModelConfig(path=str(tmp_path / "gemma2")))
    smoke = str(Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml")
    code = main(["rl", "--config", smoke, "--out", str(tmp_path / "run"), f"model.path={tmp_path / 'gemma2'}",
                 "train.steps=1", "run.progress=none"])
    assert code == 2 and "attention soft-capping" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
