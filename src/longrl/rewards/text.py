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

Containment is credited by `strict_match`, which closes two ways the published two-way rule is gamed
(the published protocol keeps that rule: `published.py`):
- a list of candidates: a gold inside a longer prediction is credited only when the prediction names it
  as its one candidate. Prediction and gold are split at list separators (`LIST_SEPARATOR_RE`: `;` `|`
  newlines; `,` `/` `&` `+` unless squeezed between two letters or digits, as in "1,000" or "AC/DC";
  the words or, and, nor, vs, versus, either, neither); the part of the prediction that holds the gold's
  words may add at most MAX_EXTRA_WORDS content words ("Gustave Eiffel's tower in Paris" for "Paris"
  adds 3), and no other part may hold any: "London or Paris or Berlin" and "Paris, France" are not
  "Paris", while "Tamo, Febe, Zobu" is the gold "Tamo, Febe, Zobu" and "Tamo, Febe, Zobu, Kudi" is not.
- a fragment: a prediction inside the gold is credited only when it holds more than PARTIAL_SHARE (half)
  of the gold's content words (words other than FUNCTION_WORDS): "of" for "Bank of America" holds none,
  "John" for "John Smith" half, "Bank of America" for "Bank of America Corporation" two thirds.
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

# Words that name nothing by themselves (articles are already gone after normalisation).
FUNCTION_WORDS = frozenset({"of", "in", "on", "at", "to", "for", "by", "with", "from", "into", "onto", "upon",
                            "and", "or", "nor", "but", "as", "than", "is", "are", "was", "were", "be"})
PARTIAL_SHARE = 0.5   # a prediction inside the gold needs MORE than this share of the gold's content words
MAX_EXTRA_WORDS = 5   # a gold inside the prediction: at most this many other content words beside it
# Where a list of candidates splits: ; | and newlines (and the CJK comma and semicolon) always; , / & +
# unless squeezed between two letters or digits ("1,000", "AC/DC", "AT&T"); the words or, and, nor, vs,
# versus, either, neither.
LIST_SEPARATOR_RE = re.compile(r"[;|\n\u3001\uff0c\uff1b]|(?<!\w)[,/&+]|[,/&+](?!\w)|"
                               r"(?<!\w)(?:or|and|nor|vs|versus|either|neither)(?!\w)", re.IGNORECASE)


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


def content_words(normalized: str) -> list[str]:
    """The words of a normalised text that are not FUNCTION_WORDS."""
    return [w for w in normalized.split() if w not in FUNCTION_WORDS]


def candidate_segments(raw: str) -> list[list[str]]:
    """The `strict_normalize`d words of each part of a raw answer split at list separators (LIST_SEPARATOR_RE)."""
    text = html.unescape(raw) if "&" in raw else raw
    return [strict_normalize(part).split() for part in LIST_SEPARATOR_RE.split(text)]


def single_candidate(prediction_raw: str, gold_raw: str) -> bool:
    """True when the gold's words occur in the prediction as one candidate: outside the separated part that
    holds them there is no content word (no rival), and inside it at most MAX_EXTRA_WORDS besides the gold's."""
    segments = candidate_segments(prediction_raw)
    words = [w for segment in segments for w in segment]
    starts, at = [], 0
    for segment in segments[:-1]:
        at += len(segment)
        starts.append(at)                       # a separator sits before words[at]
    gold = [w for segment in candidate_segments(gold_raw) for w in segment]
    n = len(gold)
    if not n:
        return False
    for i in range(len(words) - n + 1):
        if words[i:i + n] != gold:
            continue
        lo = max((b for b in starts if b <= i), default=0)             # the part holding the gold
        hi = min((b for b in starts if b >= i + n), default=len(words))
        rivals = content_words(" ".join(words[:lo] + words[hi:]))
        extra = content_words(" ".join(words[lo:i] + words[i + n:hi]))
        if not rivals and len(extra) <= MAX_EXTRA_WORDS:
            return True
    return False


def strict_match(prediction_raw: str, prediction: str, gold_raw: str, gold: str) -> bool:
    """The strict protocol's QA rule: exact match, or containment one way or the other, bounded.

    Args:
        prediction_raw, gold_raw: the texts as written (list separators are read from them).
        prediction, gold: their `strict_normalize`d forms.

    A prediction inside the gold needs more than PARTIAL_SHARE of the gold's content words; a gold inside
    the prediction needs a prediction that names it as its one candidate (`single_candidate`). Empty
    sides never match.
    """
    if not prediction or not gold:
        return False
    if prediction == gold:
        return True
    if contains_words(gold, prediction):              # a fragment of the gold
        needed = content_words(gold)
        return bool(needed) and len(content_words(prediction)) > PARTIAL_SHARE * len(needed)
    if contains_words(prediction, gold):              # the gold and more
        return single_candidate(prediction_raw, gold_raw)
    return False


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
