"""The method.md prompt through the chat template, and middle truncation at the token level."""

import pytest

from longrl.data.prompt import (
    CHOICE_FORMAT,
    QA_FORMAT,
    encode_prompt,
    truncate_middle,
    user_message,
)
from longrl.data.schema import Sample


def sample(**kw):
    base = dict(id="x", task="multihop", context="Alpha beta gamma.", question="Who?", answers=["a"])
    return Sample(**{**base, **kw})


def test_template_matches_method():
    text = user_message(sample())
    assert text == (
        "Please read the following text and answer the question below.\n\n<text>\nAlpha beta gamma.\n</text>\n\n"
        'Who?\n\nFormat your response as follows: "Therefore, the answer is (insert answer here)".'
    )


def test_choice_lists_options_and_asks_for_letter():
    text = user_message(sample(task="choice", choices=["Rome", "Oslo"], answers=["B"]))
    assert "Who?\n\n(A) Rome\n(B) Oslo\n\n" in text and CHOICE_FORMAT in text and QA_FORMAT not in text


def test_chat_template_wraps_one_user_turn(tokenizer):
    enc = encode_prompt(tokenizer, sample())
    assert enc.text.startswith("<|im_start|>user\nPlease read") and enc.text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert enc.ids == tokenizer.encode(enc.text, add_special_tokens=False) and enc.truncated_tokens == 0


@pytest.mark.parametrize("n, budget", [(10, 4), (10, 5), (10, 10), (10, 20), (7, 1), (7, 0)])
def test_truncate_middle_keeps_ends(n, budget):
    ids = list(range(n))
    out = truncate_middle(ids, budget)
    assert len(out) == min(n, budget)
    head = (min(budget, n) + 1) // 2
    assert out[:head] == ids[:head]
    assert out[head:] == (ids[n - (len(out) - head):] if len(out) > head else [])


def test_long_document_is_cut_in_the_middle(tokenizer, samples):
    s = samples[1]
    full = encode_prompt(tokenizer, s)
    budget = len(full.ids) - 60
    cut = encode_prompt(tokenizer, s, max_input_tokens=budget)
    assert len(cut.ids) <= budget and cut.truncated_tokens >= 60
    doc_ids = tokenizer.encode(s.context, add_special_tokens=False)
    kept = tokenizer.encode(cut.text.split("<text>\n", 1)[1].split("\n</text>", 1)[0], add_special_tokens=False)
    # the first and last parts of the document survive, the middle goes
    assert kept[:20] == doc_ids[:20] and kept[-20:] == doc_ids[-20:]
    assert cut.text.endswith(full.text[-200:])  # question and format line untouched


def test_budget_too_small_is_an_error(tokenizer, samples):
    with pytest.raises(ValueError, match="leaves no room for the document"):
        encode_prompt(tokenizer, samples[0], max_input_tokens=20)
