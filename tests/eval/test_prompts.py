"""Evaluation prompts: the published template, middle truncation checked token by token."""

from __future__ import annotations

import dataclasses

import pytest

from longrl.data.prompt import encode_prompt, user_message
from longrl.errors import UserError
from longrl.eval.prompts import prepare_prompt, template_parts


@pytest.fixture(scope="module")
def long_sample(samples):
    base = samples[1]  # a multihop item
    return dataclasses.replace(base, context="\n\n".join([base.context] * 6) + " Final remark ends here.")


def encode(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)


def test_short_prompt_is_the_published_one_untouched(tokenizer, samples):
    for sample in samples:
        prompt = prepare_prompt(tokenizer, sample, 100_000)
        reference = encode_prompt(tokenizer, sample, None)
        assert prompt.text == reference.text and prompt.ids == reference.ids
        assert prompt.tokens == len(reference.ids) and prompt.truncated_tokens == 0
        assert prompt.user == user_message(sample)
        assert prompt.text.startswith("<|im_start|>user\nPlease read the following text and answer the question below.")


def test_middle_truncation_keeps_document_head_and_tail_tokens(tokenizer, long_sample):
    full = prepare_prompt(tokenizer, long_sample, None)
    before, after, _, _ = template_parts(tokenizer, long_sample)
    head_ids, tail_ids = encode(tokenizer, before), encode(tokenizer, after)
    doc_ids = full.ids[len(head_ids): len(full.ids) - len(tail_ids)]
    assert head_ids + doc_ids + tail_ids == full.ids  # the template and the document tokenize apart here
    overhead = len(head_ids) + len(tail_ids)
    for budget in (overhead + 2, overhead + 3, overhead + 101, full.tokens - 1):
        cut = prepare_prompt(tokenizer, long_sample, budget)
        kept = budget - overhead
        head, tail = (kept + 1) // 2, kept // 2
        assert cut.tokens == budget == len(cut.ids)                              # total == budget
        assert cut.truncated_tokens == len(doc_ids) - kept
        assert cut.ids == head_ids + doc_ids[:head] + doc_ids[len(doc_ids) - tail:] + tail_ids  # first/last halves
        assert cut.text == tokenizer.decode(cut.ids)                              # the text is what the ids spell
        assert cut.text.startswith(before) and cut.text.endswith(after)           # template and question intact
        assert len(encode(tokenizer, cut.text)) <= budget + 2                     # a server re-tokenizes about the same
        document = cut.text[len(before): len(cut.text) - len(after)]
        assert cut.user == user_message(long_sample, document)
        no_ids = prepare_prompt(tokenizer, long_sample, budget, with_ids=False)
        assert (no_ids.ids, no_ids.text, no_ids.tokens) == (None, cut.text, budget)


def test_surely_over_budget_path_matches(tokenizer, long_sample):
    # under 6 characters per budget token the fast pass runs first; over it the offsets pass runs alone
    budget = len(long_sample.context) // 7
    cut = prepare_prompt(tokenizer, long_sample, budget)
    assert cut.tokens == len(cut.ids) == budget and cut.text == tokenizer.decode(cut.ids)


def test_document_merging_with_the_template_counts_as_template(tokenizer, samples):
    # edge newlines merge with the template's: "<text>" + "\n" + "\nThe" gives ">\n\n", "end." + "\n" + "\n</text>" gives ".\n\n"
    sample = dataclasses.replace(samples[0], context="\n" + samples[0].context + " " + "word. " * 300 + "end.\n")
    before, after, _, _ = template_parts(tokenizer, sample)
    full = prepare_prompt(tokenizer, sample, None)
    assert full.ids[: len(encode(tokenizer, before))] != encode(tokenizer, before)  # tokens straddle the edge
    assert full.ids[-len(encode(tokenizer, after)):] != encode(tokenizer, after)
    for budget in (full.tokens - 50, full.tokens - 400):
        cut = prepare_prompt(tokenizer, sample, budget)
        assert cut.tokens == len(cut.ids) == budget
        assert cut.ids[:20] == full.ids[:20] and cut.ids[-20:] == full.ids[-20:]
        assert cut.ids[: (budget + 1) // 3] == full.ids[: (budget + 1) // 3]  # a prefix and a suffix of the full ids
        assert cut.ids[-(budget // 3):] == full.ids[-(budget // 3):]
        assert cut.text == tokenizer.decode(cut.ids) and cut.text.startswith(before) and cut.text.endswith(after)


def test_budget_too_small_for_the_template_is_a_user_error(tokenizer, samples):
    with pytest.raises(UserError, match="leaves no room for the document"):
        prepare_prompt(tokenizer, samples[0], 40)


def test_decoding_and_offsets_paths_agree(tokenizer, samples, long_sample):
    from longrl.eval.prompts import _cut_by_decoding, _cut_by_offsets

    edgy = dataclasses.replace(samples[0], context="\n" + samples[0].context + " " + "word. " * 300 + "end.\n")
    for sample in (long_sample, edgy):
        before, after, _, _ = template_parts(tokenizer, sample)
        text = before + sample.context + after
        ids = encode(tokenizer, text)
        for budget in (len(ids) - 30, len(ids) // 2):
            by_decoding = _cut_by_decoding(tokenizer.backend_tokenizer, ids, text, before, after, budget, sample.id)
            assert by_decoding is not None
            assert by_decoding == _cut_by_offsets(tokenizer.backend_tokenizer, text, before, after, budget, sample.id)


def test_text_the_normaliser_changes_is_cut_from_the_original(tokenizer, long_sample):
    # "e" + combining acute accent: NFC turns it into one character, so decoding cannot give the original back
    sample = dataclasses.replace(long_sample, context="Caf\u0065\u0301 " + long_sample.context + " fin\u0065\u0301.")
    full = prepare_prompt(tokenizer, sample, None)
    cut = prepare_prompt(tokenizer, sample, full.tokens - 100)
    assert cut.tokens == len(cut.ids) == full.tokens - 100 and cut.truncated_tokens > 0
    assert "Caf\u0065\u0301 " in cut.text and "fin\u0065\u0301." in cut.text  # the original characters, sliced
    assert cut.ids[:50] == full.ids[:50] and cut.ids[-30:] == full.ids[-30:]


def test_published_cut_keeps_the_user_message_halves(tokenizer, long_sample):
    """The published scripts cut the user message (template included): first max//2, last max - max//2 tokens."""
    user_ids = tokenizer.encode(user_message(long_sample))
    untouched = prepare_prompt(tokenizer, long_sample, None, protocol="published")
    assert untouched.user == user_message(long_sample) and untouched.truncated_tokens == 0
    assert untouched.ids == encode(tokenizer, untouched.text) and untouched.tokens == len(untouched.ids)
    for budget in (41, 200, len(user_ids) - 1):
        cut = prepare_prompt(tokenizer, long_sample, budget, protocol="published")
        kept = user_ids[: budget // 2] + user_ids[len(user_ids) - (budget - budget // 2):]
        assert cut.user == tokenizer.decode(kept, skip_special_tokens=True)
        assert cut.truncated_tokens == len(user_ids) - budget
        assert cut.text.startswith("<|im_start|>user\n" + cut.user[:20]) and cut.ids == encode(tokenizer, cut.text)
        assert cut.user.startswith("Please read") and cut.user.endswith('(insert answer here)".')
        served = prepare_prompt(tokenizer, long_sample, budget, with_ids=False, protocol="published")
        assert served.ids is None and served.user == cut.user and abs(served.tokens - cut.tokens) <= 2
