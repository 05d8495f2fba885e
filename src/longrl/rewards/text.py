"""Free-text answer comparison: SQuAD normalisation, word-boundary containment, exact match, token F1.

    normalize_answer("The Eiffel Tower!")        # 'eiffel tower'
    contains_words("eiffel tower paris", "eiffel tower")   # True  (a run of whole words)
    contains_words("eiffel towers", "eiffel tower")        # False (not on a word boundary)
    token_f1("eiffel tower", "eiffel tower in paris")      # 0.667

Normalisation follows SQuAD: lowercase, delete punctuation, drop the articles a/an/the, collapse
whitespace. Punctuation here is every non-word character (Unicode-aware, so curly quotes and
dashes go too) plus "_", a superset of SQuAD's ASCII list.

The `strict` protocol compares `strict_normalize`d text: before SQuAD normalisation, HTML tags
and entities are removed ("<b>Scott Derrickson</b>") and possessive endings dropped ("Ian
Fleming's"); after it, each word is put in a canonical form, so that whole-word containment does
not lose plurals, demonyms and ordinals the published substring rule credited:
- an ordinal written with digits or as a word is its number: "3rd", "third" -> "3" (first..tenth);
- a plural "s" is dropped from words of four or more letters not ending in "ss", "is" or "us":
  "Americans" -> "american", "towers" -> "tower" (Paris, Texas... stay as they are or lose the s
  on both sides alike);
- then a demonym ending "-an" loses its "n" on words of six or more letters: "american" ->
  "america", "russian" -> "russia", "korean" -> "korea" ("Italian"/"Italy" stay apart).
Both sides get the same forms, so the rules only ever join words that share a stem.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from functools import lru_cache

_PUNCT_RE = re.compile(r"[^\w\s]|_")
_ARTICLES_RE = re.compile(r"a(?<!\wa)n?(?!\w)|the(?<!\wthe)(?!\w)")  # \b(a|an|the)\b, scanned letter-first
_TAG_RE = re.compile(r"</?[A-Za-z][^<>]{0,200}>")  # bounded: each "<" is looked at once, <= 200 characters on
_POSSESSIVE_RE = re.compile(r"(?<=\w)['\u2019]s\b")
_ORDINAL_DIGITS_RE = re.compile(r"(\d+)(?:st|nd|rd|th)")
_ORDINAL_WORDS = {w: str(i) for i, w in enumerate(
    ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"], 1)}
_PLURAL_RE = re.compile(r"\b([^\W\d_]{2,}[^\W\d_siu])s\b")
_DEMONYM_RE = re.compile(r"\b([^\W\d_]{4,}a)n\b")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = _PUNCT_RE.sub("", text.lower())
    return " ".join(_ARTICLES_RE.sub(" ", text).split())


@lru_cache(maxsize=4096)
def strict_normalize(text: str) -> str:
    """SQuAD normalisation with markup and possessives removed first and canonical word forms after.

    Example: "<b>The Americans'</b> 3rd" -> "america 3"; "Ian Fleming's" -> "ian fleming"
    Cached: the golds of a group are normalised once.
    """
    if "<" in text:
        text = _TAG_RE.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    if "'" in text or "\u2019" in text:
        text = _POSSESSIVE_RE.sub("", text)
    return " ".join(map(canonical_word, normalize_answer(text).split()))


@lru_cache(maxsize=65536)
def canonical_word(word: str) -> str:
    """One normalised word in canonical form: ordinals as numbers, no plural "s", demonym "-an" -> "-a"."""
    if word in _ORDINAL_WORDS:
        return _ORDINAL_WORDS[word]
    ordinal = _ORDINAL_DIGITS_RE.fullmatch(word)
    if ordinal:
        return ordinal.group(1)
    word = _PLURAL_RE.sub(r"\1", word)
    return _DEMONYM_RE.sub(r"\1", word)


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
