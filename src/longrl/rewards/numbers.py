"""Safe number reading for document-math answers: a regular expression and `float()`, nothing else.

    parse_first_number("approximately $1,234.5 million")   # ParsedNumber(value=1234.5, scale=1e6)
    numbers_match(12.5, 0.125, rel_tol=0.0015)             # True (percent vs fraction)

Model output is never evaluated as code (no eval/exec/sympify): the first number is found with a
linear-time regular expression and converted with `float()`. Handled: signs (ASCII and Unicode
minus), currency symbols, thousands separators ("1,234,567"), decimals, scientific notation
("1.5e3"), "%" / "percent" (the value is kept as written; `numbers_match` accepts x100 and /100),
unit words (thousand, million, billion, trillion) and any words before the number ("approximately",
"about"). Absurd inputs (thousands of digits, 1e999, "nan", "inf") are not numbers: they parse to
None or a non-finite value is rejected, in microseconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MAX_DIGITS = 64  # a longer digit run is not an answer a document question can have

_NUMBER_RE = re.compile(
    r"(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?(?:[eE](?P<exp>[-+]?\d{1,4})(?!\d))?"
    r"|(?<!\d)(?P<bare>\.\d+)"
)
_UNIT_RE = re.compile(r"\s*(?P<unit>thousand|million|billion|trillion)s?\b", re.IGNORECASE)
_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_SIGN_SKIP = " \t$€£¥₹"  # characters allowed between a sign and its digits ("-$5", "- 5")
_MINUS = "-\u2212"


@dataclass(frozen=True)
class ParsedNumber:
    value: float   # the number as written: "12.5%" -> 12.5, "3 million" -> 3.0
    scale: float   # multiplier of a unit word after it (1e6 for "million"), else 1.0

    def candidates(self) -> tuple[float, ...]:
        """Values the text may mean: as written, and scaled by its unit word when it has one."""
        return (self.value,) if self.scale == 1.0 else (self.value, self.value * self.scale)


def parse_first_number(text: str) -> ParsedNumber | None:
    """The first number in `text`, or None when there is none or it is absurd.

    Args:
        text: any string (model output or a gold answer).

    Returns:
        ParsedNumber, or None for no number, more than MAX_DIGITS digits, or a non-finite value.
    """
    match = _NUMBER_RE.search(text)
    if match is None:
        return None
    literal = match.group(0).replace(",", "")
    if len(literal) > MAX_DIGITS + 8:  # digits, a point and an exponent of up to 4 digits
        return None
    value = float(literal)
    if not math.isfinite(value):
        return None
    if _negative_sign_before(text, match.start()):
        value = -value
    unit = _UNIT_RE.match(text, match.end())
    scale = _SCALES[unit.group("unit").lower()] if unit else 1.0
    if not math.isfinite(value * scale):
        return None
    return ParsedNumber(value=value + 0.0, scale=scale)


def _negative_sign_before(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and start - i <= 4 and text[i] in _SIGN_SKIP:
        i -= 1
    return i >= 0 and text[i] in _MINUS and (i == 0 or not text[i - 1].isalnum())


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
