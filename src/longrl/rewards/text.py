"""Free-text answer comparison: SQuAD normalisation, word-boundary containment, exact match, token F1.

    normalize_answer("The Eiffel Tower!")        # 'eiffel tower'
    contains_words("eiffel tower paris", "eiffel tower")   # True  (a run of whole words)
    contains_words("eiffel towers", "eiffel tower")        # False (not on a word boundary)
    token_f1("eiffel tower", "eiffel tower in paris")      # 0.667

Normalisation follows SQuAD: lowercase, delete punctuation, drop the articles a/an/the, collapse
whitespace. Punctuation here is every non-word character (Unicode-aware, so curly quotes and
dashes go too) plus "_", a superset of SQuAD's ASCII list.
"""

from __future__ import annotations

import re
from collections import Counter

_PUNCT_RE = re.compile(r"[^\w\s]|_")
_ARTICLES_RE = re.compile(r"\b(?:a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = _PUNCT_RE.sub("", text.lower())
    return " ".join(_ARTICLES_RE.sub(" ", text).split())


def contains_words(haystack: str, needle: str) -> bool:
    """True if normalised `needle` is a run of whole words of normalised `haystack`.

    Both arguments must already be normalised. An empty needle or haystack never matches: a
    prediction like "The." normalises to "" and must not match every gold.
    """
    if not needle or not haystack:
        return False
    return f" {needle} " in f" {haystack} "


def two_way_match(prediction: str, gold: str) -> bool:
    """The published QA rule on word boundaries: gold inside prediction or prediction inside gold.

    Args:
        prediction: normalised prediction.
        gold: normalised gold answer.
    """
    return contains_words(prediction, gold) or contains_words(gold, prediction)


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 between two normalised strings (0.0 when either is empty).

    Example: precision 2/2, recall 2/4 for ("eiffel tower", "eiffel tower in paris"): F1 = 2 * 1 * 0.5 / 1.5 = 0.667
    """
    pred_tokens, gold_tokens = prediction.split(), gold.split()
    if not pred_tokens or not gold_tokens:
        return 0.0
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)
