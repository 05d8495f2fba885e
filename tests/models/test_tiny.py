"""The tiny model: a plain Qwen2ForCausalLM, seeded, saved and reloaded bit-exactly."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from longrl.models.tiny import build_tiny_model


def test_seeded_init(tiny_arch, tokenizer):
    a, b = build_tiny_model(tiny_arch, tokenizer), build_tiny_model(tiny_arch, tokenizer)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = build_tiny_model(tiny_arch.model_copy(update={"init_seed": 1}), tokenizer)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_init_does_not_touch_global_rng(tiny_arch, tokenizer):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    build_tiny_model(tiny_arch, tokenizer)
    assert torch.equal(torch.rand(3), expected)


def test_round_trip_through_auto_classes(tiny_model, tiny_model_dir, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert list((tiny_model_dir).glob("*.safetensors")) and not list(tiny_model_dir.glob("*.bin"))
    for (name, x), (_, y) in zip(tiny_model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(x, y), name
    text = "The mentor of Bako is Rilu.<|im_end|>"
    assert tok.encode(text, add_special_tokens=False) == tokenizer.encode(text, add_special_tokens=False)
    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    torch.testing.assert_close(model(ids).logits, tiny_model(ids).logits, rtol=0, atol=0)


def test_shape_follows_config(tiny_model, tiny_arch, tokenizer):
    cfg = tiny_model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_key_value_heads) == (64, 2, 2)
    assert cfg.vocab_size == len(tokenizer) and cfg.eos_token_id == tokenizer.eos_token_id
    assert tiny_model.lm_head.weight is tiny_model.model.embed_tokens.weight  # tied
