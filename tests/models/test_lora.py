"""models/lora.py: adapters train alone, switch off to the base model, merge exactly, save and load as PEFT folders."""

from __future__ import annotations

import sys

import pytest
import torch

from longrl.config.model import LoraSettings, ModelConfig
from longrl.errors import ConfigError
from longrl.models.loading import load_policy
from longrl.models.lora import (
    adapter_layers,
    adapters_disabled,
    attach_adapters,
    is_adapter_folder,
    merge_adapters,
    save_model_folder,
)

LORA = LoraSettings(rank=4, alpha=8, target_modules=["q_proj", "v_proj", "up_proj"])


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def perturb_adapters(model, seed=0):
    """Training's effect, by hand: non-zero B matrices."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1)


@pytest.fixture()
def base_and_ids(tiny_model_dir):
    model = load_policy(ModelConfig(path=str(tiny_model_dir))).eval()
    return model, torch.randint(5, 500, (2, 12), generator=torch.Generator().manual_seed(1), device="cpu")


def test_adapters_train_alone_and_start_as_the_base_model(base_and_ids):
    model, ids = base_and_ids
    before = logits(model, ids)
    attach_adapters(model, LORA)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(adapter_layers(model)) == 2 * 3                        # 2 layers x (q, v, up)
    assert torch.equal(logits(model, ids), before)                    # B = 0: exactly the base model


def test_disabled_adapters_give_the_base_model_and_merging_keeps_the_output(base_and_ids):
    model, ids = base_and_ids
    base = logits(model, ids)
    attach_adapters(model, LORA)
    perturb_adapters(model)
    adapted = logits(model, ids)
    assert not torch.allclose(adapted, base)
    with adapters_disabled(model):
        assert torch.equal(logits(model, ids), base)                  # the RL reference, without a second copy
    assert all(p.requires_grad for n, p in model.named_parameters() if ".lora_" in n)   # trainable again
    merge_adapters(model)
    assert adapter_layers(model) == []
    assert not any(".lora_" in n or "base_layer" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(logits(model, ids), adapted, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("final", ["adapter", "merged"])
def test_final_folder_loads_back_as_the_trained_model(tmp_path, tiny_model_dir, tokenizer, base_and_ids, final):
    model, ids = base_and_ids
    cfg = ModelConfig(path=str(tiny_model_dir), lora=LORA.model_copy(update={"final": final}))
    attach_adapters(model, cfg.lora)
    perturb_adapters(model, seed=2)
    adapted = logits(model, ids)
    folder = tmp_path / "final"
    folder.mkdir()
    save_model_folder(model, tokenizer, folder, cfg)
    assert is_adapter_folder(folder) == (final == "adapter")
    if final == "adapter":
        assert {p.name for p in folder.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"}
    loaded = load_policy(ModelConfig(path=str(folder))).eval()        # an adapter folder: base + adapter, merged
    assert adapter_layers(loaded) == []
    torch.testing.assert_close(logits(loaded, ids), adapted, rtol=1e-5, atol=1e-5)


def test_adapter_folder_loads_with_peft_itself(tmp_path, tiny_model_dir, tokenizer, base_and_ids):
    from peft import PeftModel

    model, ids = base_and_ids
    cfg = ModelConfig(path=str(tiny_model_dir), lora=LORA.model_copy(update={"final": "adapter"}))
    attach_adapters(model, cfg.lora)
    perturb_adapters(model, seed=3)
    adapted = logits(model, ids)
    save_model_folder(model, tokenizer, tmp_path, cfg)
    peft_model = PeftModel.from_pretrained(load_policy(ModelConfig(path=str(tiny_model_dir))), str(tmp_path)).eval()
    torch.testing.assert_close(logits(peft_model, ids), adapted, rtol=1e-5, atol=1e-5)


def test_config_errors(base_and_ids, monkeypatch):
    model, _ = base_and_ids
    with pytest.raises(ConfigError, match="model.lora.target_modules"):
        attach_adapters(model, LoraSettings(target_modules=["no_such_proj"]))
    with pytest.raises(ValueError, match="target_modules"):
        LoraSettings(target_modules=[])
    monkeypatch.setitem(sys.modules, "peft", None)                      # peft not installed
    with pytest.raises(ConfigError, match=r"pip install 'longrl\[lora\]'"):
        attach_adapters(model, LORA)


def adapter_folder(tmp_path, tiny_model_dir, tokenizer, base_and_ids):
    model, _ = base_and_ids
    cfg = ModelConfig(path=str(tiny_model_dir), lora=LORA.model_copy(update={"final": "adapter"}))
    attach_adapters(model, cfg.lora)
    folder = tmp_path / "adapter"
    folder.mkdir()
    save_model_folder(model, tokenizer, folder, cfg)
    return folder


def test_broken_adapter_folders_are_config_errors(tmp_path, tiny_model_dir, tokenizer, base_and_ids):
    """Issue 25, case 9: a self-referencing base recursed until RecursionError, a malformed config was a
    JSONDecodeError traceback, a missing weights file an OSError (`serve` called it 'cannot listen')."""
    import json

    folder = adapter_folder(tmp_path, tiny_model_dir, tokenizer, base_and_ids)
    config_file = folder / "adapter_config.json"
    good = json.loads(config_file.read_text())

    config_file.write_text(json.dumps({**good, "base_model_name_or_path": str(folder)}))
    with pytest.raises(ConfigError, match=r"adapter_config.json base_model_name_or_path: leads back to an adapter "
                                          r"folder already on the way \(.*adapter -> .*adapter\)"):
        load_policy(ModelConfig(path=str(folder)))
    other = tmp_path / "other"
    other.mkdir()
    (other / "adapter_config.json").write_text(json.dumps({**good, "base_model_name_or_path": str(folder)}))
    (other / "adapter_model.safetensors").write_bytes((folder / "adapter_model.safetensors").read_bytes())
    config_file.write_text(json.dumps({**good, "base_model_name_or_path": str(other)}))
    with pytest.raises(ConfigError, match="leads back to an adapter folder already on the way"):
        load_policy(ModelConfig(path=str(folder)))               # a loop of two folders

    config_file.write_text('{"base_model_name_or_path": ')
    with pytest.raises(ConfigError, match=r"adapter/adapter_config.json: not a readable adapter config \(JSONDecodeError"):
        load_policy(ModelConfig(path=str(folder)))
    config_file.write_text(json.dumps({**good, "r": "four"}))
    with pytest.raises(ConfigError, match=r"adapter_config.json: the adapter does not fit its base model \('<=' not "):
        load_policy(ModelConfig(path=str(folder)))

    config_file.write_text(json.dumps(good))
    (folder / "adapter_model.safetensors").rename(folder / "adapter_model.bin")
    with pytest.raises(ConfigError, match=r"adapter: no adapter_model.safetensors, the adapter's weights "
                                          r"\(found adapter_model.bin: longrl loads safetensors only\)"):
        load_policy(ModelConfig(path=str(folder)))
    (folder / "adapter_model.bin").rename(folder / "adapter_model.safetensors")
    assert load_policy(ModelConfig(path=str(folder))) is not None     # repaired, it loads
