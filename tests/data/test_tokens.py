"""PieceTokenizer: the tokenizer's own ids, memoised; other makes fall back; the chat frame is the template's."""

from __future__ import annotations

import pytest

from longrl.data.prompt import encode_prompt, render_chat
from longrl.data.synthetic import synthesize
from longrl.data.tokens import PieceTokenizer

ODD_TEXTS = [
    "",
    "The mentor of Gire is Tamo.",
    "In 2019, the revenue of Bako was 45 million dollars.\n\nNext paragraph",
    "  two spaces,\tthen a tab\r\n and CRLF;  trailing   ",
    "It's what they'll do; I'd've said 'S'.",
    "<|im_start|>user\nHi<|im_end|>\n<think>a</think>b<|endoftext|>",
    "naïve café — “quoted” ünïcödé 東京 🙂 mixed with ASCII words",
    "\n\n\n   \n",
    "numbers 1234567890 and 3.14159, -42",
    "control\x1c\x1dseparators\x1f and \x0b\x0c feeds",
]


def test_encode_equals_the_tokenizer_on_odd_texts(tokenizer):
    fast = PieceTokenizer(tokenizer)
    assert fast.exact_fast_path
    for text in ODD_TEXTS * 2:                       # twice: the second pass reads the memo
        assert fast.encode(text) == tokenizer.encode(text, add_special_tokens=False), repr(text)
        assert fast.count(text) == len(tokenizer.encode(text, add_special_tokens=False))


def test_encode_equals_the_tokenizer_on_synthetic_prompts(tokenizer):
    fast = PieceTokenizer(tokenizer)
    for sample in synthesize(["docmath", "multihop", "choice", "lookup"], 8, 500, seed=1, tokenizer=tokenizer):
        text = encode_prompt(tokenizer, sample).text
        assert fast.encode(text) == tokenizer.encode(text, add_special_tokens=False)
        assert fast.encode(sample.trace) == tokenizer.encode(sample.trace, add_special_tokens=False)


def test_estimate_is_exact_for_sentences_joined_by_spaces(tokenizer):
    fast = PieceTokenizer(tokenizer)
    sample = synthesize(["multihop"], 1, 400, seed=2, tokenizer=tokenizer)[0]
    for sentence in sample.context.replace("\n\n", " ").split(". "):
        text = " " + sentence.strip() + "."
        assert fast.estimate(text) == len(tokenizer.encode(text, add_special_tokens=False)), text


def test_chat_frame_matches_the_template(tokenizer):
    fast = PieceTokenizer(tokenizer)
    for user in ["hello", " edge spaces \n", "a\x00b"]:
        assert render_chat(fast, user) == render_chat(tokenizer, user)
    turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]   # not a lone user turn
    assert fast.apply_chat_template(turns, tokenize=False) == tokenizer.apply_chat_template(turns, tokenize=False)


def test_tokenizer_of_another_make_goes_through_its_own_encode(tokenizer):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    other = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    fast = PieceTokenizer(other)
    assert not fast.exact_fast_path
    assert fast.encode("a b c") == other.encode("a b c", add_special_tokens=False) == [1, 2, 0]


def test_unmemoised_baseline_gives_the_same_samples(tokenizer):
    def make(tok):
        return synthesize(["docmath", "lookup"], 4, 300, seed=7, tokenizer=tok)

    assert make(PieceTokenizer(tokenizer, memoise=False)) == make(PieceTokenizer(tokenizer)) == make(tokenizer)


@pytest.mark.parametrize("memoise", [True, False])
def test_delegates_everything_else(tokenizer, memoise):
    fast = PieceTokenizer(tokenizer, memoise=memoise)
    assert fast.eos_token_id == tokenizer.eos_token_id and fast.pad_token_id == tokenizer.pad_token_id
    assert fast.decode(fast.encode("The mentor of Gire")) == "The mentor of Gire"


def test_ascii_pattern_rewrites_unicode_classes():
    from longrl.data.tokens import ascii_pattern

    assert ascii_pattern(r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}") == r"[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]"
