"""The default tokenizer: Qwen2-compatible byte-level BPE, identical ids through AutoTokenizer."""

import json

from transformers import AutoTokenizer

from longrl.data.synthetic.corpus import corpus_texts
from longrl.data.synthetic.world import METRICS, NAMES, RELATIONS
from longrl.models.tokenizer import (
    IM_END,
    PAD,
    THINK_CLOSE,
    THINK_OPEN,
    save_tokenizer,
    train_tokenizer,
)

TEXT = "<|im_start|>user\nThe mentor of Bako is Rilu. Ünïcödé, 12,345.67 €\t\n<think>x</think><|im_end|>\n"


def test_reload_through_auto_tokenizer_gives_identical_ids(tmp_path):
    tok = train_tokenizer(corpus_texts(60, seed=1), vocab_size=600)
    save_tokenizer(tok, tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))  # a qwen2 model folder
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert type(again).__name__ == "Qwen2Tokenizer"
    assert again.encode(TEXT, add_special_tokens=False) == tok.encode(TEXT, add_special_tokens=False)
    assert again.decode(again.encode(TEXT, add_special_tokens=False)) == TEXT  # byte-level: lossless
    assert len(again) == len(tok)


def test_training_is_deterministic():
    a = train_tokenizer(corpus_texts(40, seed=2), vocab_size=500)
    b = train_tokenizer(corpus_texts(40, seed=2), vocab_size=500)
    assert a.get_vocab() == b.get_vocab()


def test_special_and_think_tokens(tokenizer):
    assert tokenizer.eos_token == IM_END and tokenizer.pad_token == PAD
    for token in (THINK_OPEN, THINK_CLOSE, IM_END):
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1
    ids = tokenizer.encode("<think>a</think>b<|im_end|>", add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>a</think>b"  # think tags survive


def test_task_vocabulary_is_single_tokens(tokenizer):
    for word in NAMES + RELATIONS + METRICS:
        assert len(tokenizer.encode(" " + word, add_special_tokens=False)) == 1, word


def test_digits_are_split_like_qwen2(tokenizer):
    assert tokenizer.tokenize("2019") == ["2", "0", "1", "9"]


def test_chat_template(tokenizer):
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_shipped_tokenizer_is_reproducible(tmp_path):
    """`longrl model tokenizer` with default settings rebuilds exactly the shipped tokenizer."""
    from longrl.cli import main
    from longrl.models.tokenizer import DEFAULT_TOKENIZER_DIR, assets_dir

    assert main(["model", "tokenizer", "--out", str(tmp_path / "tok")]) == 0
    shipped = json.loads((assets_dir() / DEFAULT_TOKENIZER_DIR / "tokenizer.json").read_text())
    rebuilt = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert rebuilt == shipped
