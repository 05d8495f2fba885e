"""Safe number reading for document-math answers (the `strict` protocol): regular expressions and
`float()`, nothing else.

    parse_first_number("approximately $1,234.5 million")   # ParsedNumber(value=1234.5, scale=1e6, decimals=1, ...)
    numbers_match(12.5, 0.125, rel_tol=0.0015)             # True (percent vs fraction)
    stated_scales("Revenue (in thousands)")                # (1000.0,)

Model output is never evaluated as code (no eval/exec/sympify). The reader takes the first
whitespace-separated word that holds a digit and reads it only if the whole word is a number:
opening brackets or quotes, a sign (ASCII or Unicode minus), a currency symbol (`$`, `€`, `£`, `¥`,
`₹`, `US$`), the digits, an exponent, `%`, a currency symbol or `°`, a unit of letters (`10m`, `5-year`, `3rd`), closing
brackets or punctuation. Anything else in that word (a path, an identifier, code, `12-5`, `3/4`)
means the answer states no number it can read; the reader never looks further for one.

Read exactly or not at all (the number is None):
- more than MAX_DIGITS digits, or an exponent that overflows or underflows (`1e99999`, `1e-400`);
- thousands separators not in groups of three after a group of one to three digits (`1,00,000`,
  `1,2`), or a group of one to three digits followed by a word of exactly three digits (`1 234`);
- a base prefix (`0x1F`, `0b101`, `0o17`): the digits after it are not decimal;
- digits of several scripts in one number (`1٢3`). Decimal digits of any one script (Unicode
  category Nd: Arabic-Indic `١٢٣`, fullwidth `１２３`, Devanagari ...) are read by their value, as
  the same number written in ASCII digits.
"nan", "inf" and words without digits are not numbers.

A unit after the number (the word thousand/million/billion/trillion, or a suffix k, m, mn, bn, tn)
is kept as `scale`: `candidates()` gives the value as written and scaled. `%` / "percent" keeps the
value as written (`numbers_match` accepts x100 and /100). `decimals` records the precision the
number states, for the rounding rule of `numbers_match`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

MAX_DIGITS = 64  # a longer digit run is not an answer a document question can have

_CURRENCY = "$€£¥₹"
_NUMBER_WORD_RE = re.compile(
    r"[(\[{\"'“‘«≈~=]*"                                   # opening brackets, quotes, "about"
    rf"(?P<sign1>[-+\u2212])?(?:[A-Z]{{0,3}}[{_CURRENCY}])?(?P<sign2>[-+\u2212])?"
    r"(?P<digits>\d+(?:,\d+)*(?:\.\d+)?|\.\d+)"
    r"(?P<exp>[eE][-+]?\d+)?"
    rf"(?P<percent>%)?[{_CURRENCY}°]?"
    r"(?P<unit>-?[^\W\d_]+)?"                              # letters: 10m, 5-year, 3rd, 12.5percent
    r"[)\]}\"'”’»,.;:!?]*"                                 # closing brackets, quotes, punctuation
)
_FIRST_DIGIT_RE = re.compile(r"\d")
_SPACE_RE = re.compile(r"\s")
_SPACES_RE = re.compile(r"\s*")
MAX_PREFIX_CHARS = 32  # a word with more characters before its first digit is not a number word
_GROUPED_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_BASE_PREFIX_RE = re.compile(r"0[xXbBoO][0-9A-Fa-f]")
_THREE_DIGITS_RE = re.compile(r"\d{3}(?:\.\d+)?[)\]}\"'”’»,.;:!?%]*")
_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12,
           "k": 1e3, "m": 1e6, "mn": 1e6, "bn": 1e9, "tn": 1e12}
_UNIT_WORD_RE = re.compile(r"\s*(?P<unit>thousand|million|billion|trillion)s?\b", re.IGNORECASE)
_PERCENT_WORD_RE = re.compile(r"\s*percent\b", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedNumber:
    value: float                 # the number as written: "12.5%" -> 12.5, "3 million" -> 3.0
    scale: float = 1.0           # multiplier of a unit after it (1e6 for "million"), else 1.0
    decimals: int | None = None  # digits after the decimal point as written; None with an exponent
    significant: int = 0         # significant digits as written ("0.260" -> 3)

    def candidates(self) -> tuple[float, ...]:
        """Values the text may mean: as written, and scaled by its unit when it has one."""
        return (self.value,) if self.scale == 1.0 else (self.value, self.value * self.scale)


@lru_cache(maxsize=4096)
def parse_first_number(text: str) -> ParsedNumber | None:
    """The first number in `text` (see the module rules), or None when it has none it can read exactly.
    Cached (the result is immutable): the golds of a group are read once.

    Args:
        text: any string (model output or a gold answer).

    Returns:
        ParsedNumber, or None.
    """
    first = _FIRST_DIGIT_RE.search(text)
    if first is None:
        return None
    start = first.start()
    while start > 0 and not text[start - 1].isspace():
        start -= 1
        if first.start() - start > MAX_PREFIX_CHARS:
            return None  # brackets, quotes, signs and currency never run this long before a number
    space = _SPACE_RE.search(text, first.end())
    end = space.start() if space else len(text)
    match = _NUMBER_WORD_RE.fullmatch(text, start, end)
    if match is None or (match.group("sign1") and match.group("sign2")):
        return None
    digits, exponent = match.group("digits"), match.group("exp") or ""
    if _BASE_PREFIX_RE.match(text, match.start("digits")):
        return None
    if "," in digits and not _GROUPED_RE.fullmatch(digits):
        return None
    if "," not in digits and "." not in digits and len(digits) <= 3 and not exponent and not match.group("unit"):
        if end < len(text) and _THREE_DIGITS_RE.fullmatch(_next_word(text, end)):
            return None  # "1 234": a space-grouped thousand or two numbers; not read
    if len(digits.replace(",", "").replace(".", "")) > MAX_DIGITS or len(exponent) > 8:
        return None
    literal = _ascii_digits(digits.replace(",", "") + exponent)
    if literal is None:
        return None
    mantissa = literal.split("e")[0].split("E")[0]
    value = float(literal)
    if not math.isfinite(value) or (value == 0.0 and mantissa.strip("0.")):
        return None  # overflow to infinity, or a non-zero number that underflows to 0
    if match.group("sign1") in ("-", "\u2212") or match.group("sign2") in ("-", "\u2212"):
        value = -value
    scale = _scale_after(text, match, end)
    if not math.isfinite(value * scale):
        return None
    decimals = None if exponent else (len(mantissa.split(".")[1]) if "." in mantissa else 0)
    return ParsedNumber(value=value + 0.0, scale=scale, decimals=decimals, significant=_significant(mantissa))


def _next_word(text: str, end: int) -> str:
    start = _SPACES_RE.match(text, end).end()
    space = _SPACE_RE.search(text, start)
    return text[start: space.start() if space else len(text)]


def _ascii_digits(literal: str) -> str | None:
    """`literal` with its digits in ASCII; None when they mix scripts (each script's zero differs)."""
    if literal.isascii():
        return literal
    zeros = {ord(ch) - unicodedata.decimal(ch) for ch in literal if ch.isdigit()}
    if len(zeros) != 1:
        return None
    return "".join(str(unicodedata.decimal(ch)) if ch.isdigit() else ch for ch in literal)


def _significant(mantissa: str) -> int:
    digits = mantissa.replace(".", "").lstrip("0")
    if "." in mantissa:
        return len(digits)
    return len(digits.rstrip("0")) or (1 if digits else 0)


def _scale_after(text: str, match: re.Match, end: int) -> float:
    unit = (match.group("unit") or "").lstrip("-").lower()
    if unit in _SCALES:
        return _SCALES[unit]
    if unit.rstrip("s") in ("thousand", "million", "billion", "trillion"):
        return _SCALES[unit.rstrip("s")]
    word = _UNIT_WORD_RE.match(text, end)
    return _SCALES[word.group("unit").lower()] if word else 1.0


def close_to(prediction: float, gold: float, rel_tol: float) -> bool:
    """|prediction - gold| <= rel_tol * |gold|; exact equality when gold is 0."""
    if gold == 0:
        return prediction == 0
    return abs(prediction - gold) <= rel_tol * abs(gold)


def numbers_match(prediction: float, gold: float, rel_tol: float) -> bool:
    """Equal within `rel_tol`, also when the prediction is the gold x100 or /100 (percent vs fraction).

    Example: gold 0.125, prediction 12.5 -> 12.5 is close to 0.125 * 100 -> True.
    """
    return any(close_to(prediction, g, rel_tol) for g in (gold, gold * 100.0, gold / 100.0))


def rounds_to(prediction: float, gold: float, decimals: int | None, significant: int) -> bool:
    """The prediction is the gold rounded to the `decimals` places it is written with.

    Only a prediction that states its precision counts: at least one decimal place and two
    significant digits ("0.26" for 0.2573, "12.5" for 12.47; not "3" for 2.6 nor "0.3" for 0.26).
    Half a unit of the last place, with a relative slack of 1e-9 for binary floating point.

    Example: rounds_to(0.26, 0.2573, 2, 2) -> |0.26 - 0.2573| = 0.0027 <= 0.005 -> True.
    """
    if decimals is None or decimals < 1 or significant < 2:
        return False
    half_unit = 0.5 * 10.0 ** -decimals
    return abs(prediction - gold) <= half_unit * (1 + 1e-9) + 1e-12 * abs(gold)


_STATED_UNIT_RE = re.compile(
    r"\bin\s+(?:(?:US\$|[$€£¥₹]|usd|eur|gbp|rmb|cny|dollars|euros)\s*)?(?P<plural>thousands|millions|billions|trillions)\b"
    r"|\bin\s+(?:US\$|[$€£¥₹]|usd|eur|gbp|rmb|cny)\s*(?P<singular>thousand|million|billion|trillion)\b"
    r"|(?:US\$|[$€£¥₹]|\b(?:usd|eur|gbp|rmb|cny))\s*(?P<after_currency>thousands|millions|billions|trillions)\b"
    r"|\bin\s+\$?\s*(?P<zeros>000)s\b",
    re.IGNORECASE,
)


@lru_cache(maxsize=32)
def stated_scales(text: str) -> tuple[float, ...]:
    """Unit multipliers a question or document states for its figures, sorted.

    "(in thousands)", "in millions", "$ in millions", "in € million", "USD billions", "in $000s".
    The G responses of a group share one document string: the result is cached by it.

    Example: stated_scales("Table 3 (in thousands, except per share data)") -> (1000.0,)
    """
    found = set()
    for match in _STATED_UNIT_RE.finditer(text):
        word = next(g for g in match.groups() if g)
        found.add(1e3 if word == "000" else _SCALES[word.lower().rstrip("s")])
    return tuple(sorted(found))
