"""Fixtures of the RL tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def stoppy_model_dir(tmp_path_factory, tiny_arch, tokenizer):
    """The tiny model with 40 extra end-of-response ids: response lengths vary, so overlong shaping
    and rewards vary."""
    from longrl.models.tiny import build_tiny_model, save_pretrained

    model = build_tiny_model(tiny_arch, tokenizer)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *range(400, 440)]
    path = tmp_path_factory.mktemp("stoppy")
    save_pretrained(model, tokenizer, path)
    return path
