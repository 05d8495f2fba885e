"""SQuAD normalisation, containment and F1 against naive reference implementations."""

from __future__ import annotations

import random
import string

import pytest

from longrl.rewards.text import (
    contains_words,
    normalize_answer,
    token_f1,
    two_way_match,
)


def naive_contains(haystack: list[str], needle: list[str]) -> bool:
    if not needle or not haystack:
        return False
    return any(haystack[i:i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def naive_f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return 0.0
    remaining = list(gold)
    same = 0
    for token in pred:
        if token in remaining:
            remaining.remove(token)
            same += 1
    if same == 0:
        return 0.0
    p, r = same / len(pred), same / len(gold)
    return 2 * p * r / (p + r)


def naive_normalize(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    words = [w for w in text.split() if w not in ("a", "an", "the")]
    return " ".join(words)


@pytest.mark.parametrize("seed", range(5))
def test_containment_and_f1_match_reference_loops(seed):
    rng = random.Random(seed)
    vocab = ["paris", "tower", "of", "eiffel", "x", "1", "new", "york"]
    for _ in range(300):
        hay = [rng.choice(vocab) for _ in range(rng.randint(0, 6))]
        needle = [rng.choice(vocab) for _ in range(rng.randint(0, 3))]
        assert contains_words(" ".join(hay), " ".join(needle)) == naive_contains(hay, needle)
        assert token_f1(" ".join(needle), " ".join(hay)) == pytest.approx(naive_f1(needle, hay))


@pytest.mark.parametrize("seed", range(3))
def test_normalize_matches_squad_on_ascii(seed):
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + string.punctuation.replace("_", "") + "   "
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        text += rng.choice(["", " The", " a ", " an apple"])
        assert normalize_answer(text) == naive_normalize(text)


def test_normalize_unicode_punctuation_and_articles():
    assert normalize_answer("\u201cThe  Eiffel\u2014Tower!\u201d") == "eiffeltower"
    assert normalize_answer("The.") == ""
    assert normalize_answer("A") == ""
    assert normalize_answer("Théâtre") == "théâtre"


def test_two_way_match_is_on_words_and_never_empty():
    assert two_way_match("eiffel tower", "tower")
    assert two_way_match("tower", "eiffel tower")
    assert not two_way_match("towers", "tower")
    assert not two_way_match("", "tower")
    assert not two_way_match("tower", "")
