"""Rule verifiers: is an extracted prediction one of the gold answers? A registry keyed by name.

    verify = VERIFIERS.get(TASKS.get("multihop").verifier)      # "qa"
    verify("the Eiffel Tower", ["Eiffel Tower"], VerifyOptions())
    # Verdict(score=1.0, metrics={'em': 1.0, 'f1': 1.0})

A verifier is `(prediction: str, golds: list[str], opts: VerifyOptions) -> Verdict`. Any gold
matching counts. Golds are read before the prediction, so a gold the verifier cannot use (no number
for "numeric", no letter for "choice") raises `GoldError` whatever the prediction, including "".
New verifiers plug in with `@VERIFIERS.register("name")` and a task naming them in
`longrl.data.tasks.TASKS`.

These are the `strict` protocol's verifiers (`published.py` holds the published scripts' rules):
- "qa": `strict_normalize` (SQuAD normalisation; markup and possessives removed; plural, demonym
  and ordinal forms joined), then `text.strict_match`: exact match, or the published two-way
  containment on whole words with its two holes closed: a prediction that lists candidates ("London
  or Paris or Berlin") is not credited for the one that is the gold, and a fragment of the gold ("of"
  for "Bank of America", "John" for "John Smith") needs more than half of the gold's content words.
  An empty normalised prediction never matches. Reports em, f1.
- "numeric": the first number of the prediction (`numbers.parse_first_number`) equals a gold
  number within `rel_tol` (exact for a gold of 0), also x100 or /100; or it is the gold rounded to
  the decimals the prediction is written with (at least one decimal and two significant digits:
  "0.26" for 0.2573). Unit words count both ways ("3.5 million" is 3.5 and 3,500,000), and so
  does a unit the question or document states (`VerifyOptions.scales`, from "(in thousands)"):
  "2500" matches a gold of 2,500,000 in a table in thousands.
- "choice": a letter from "(B)", "B", "B.", "b", "(b) Paris", "B: Paris" against the gold letter; a
  prediction that names another option too ("(B) or (C)", "(B), C") scores 0 (it hedges).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from longrl.errors import UserError
from longrl.registry import Registry
from longrl.rewards.numbers import numbers_match, parse_first_number, rounds_to
from longrl.rewards.text import strict_match, strict_normalize, token_f1


class GoldError(UserError):
    """A gold answer the task's verifier cannot use (bad data, not a model failure)."""


@dataclass(frozen=True)
class VerifyOptions:
    numeric_rel_tol: float = 0.0015  # docmath relative tolerance (0.15%, as published)
    scales: tuple[float, ...] = ()   # unit multipliers the question or document states (numbers.stated_scales)

    @classmethod
    def from_config(cls, cfg) -> VerifyOptions:
        """From a RewardConfig."""
        return cls(numeric_rel_tol=cfg.numeric_rel_tol)


@dataclass(frozen=True)
class Verdict:
    score: float                                          # 1.0 correct, 0.0 not
    metrics: dict[str, float] = field(default_factory=dict)  # verifier-specific (qa: em, f1)


Verifier = Callable[[str, list[str], VerifyOptions], Verdict]
VERIFIERS: Registry[Verifier] = Registry("verifier")


@VERIFIERS.register("qa")
def verify_qa(prediction: str, golds: list[str], opts: VerifyOptions) -> Verdict:
    """`strict_match` (bounded two-way word containment) after `strict_normalize`; em and f1 in metrics."""
    normalized_golds = [strict_normalize(g) for g in golds]
    if not any(normalized_golds):
        raise GoldError(f"every gold answer normalises to nothing (articles/punctuation only): {golds!r}")
    pred = strict_normalize(prediction)
    score = em = f1 = 0.0
    for raw, gold in zip(golds, normalized_golds):
        if not gold:
            continue
        if strict_match(prediction, pred, raw, gold):
            score = 1.0
        if pred and pred == gold:
            em = 1.0
        f1 = max(f1, token_f1(pred, gold))
    return Verdict(score, {"em": em, "f1": f1})


@VERIFIERS.register("numeric")
def verify_numeric(prediction: str, golds: list[str], opts: VerifyOptions) -> Verdict:
    """The first number of the prediction against each gold number (tolerance, x100, /100, rounding, units)."""
    gold_values = []
    for gold in golds:
        parsed = parse_first_number(gold)
        if parsed is None:
            raise GoldError(f"gold answer {gold!r} has no number a numeric task can compare with")
        gold_values.extend(parsed.candidates())
    pred = parse_first_number(prediction)
    if pred is None:
        return Verdict(0.0, {"parsed": 0.0})
    gold_values += [g * s for g in gold_values for s in opts.scales]
    scaled = [(v, 1.0) for v in pred.candidates()]
    if pred.scale != 1.0:
        scaled[1] = (pred.value * pred.scale, pred.scale)
    scaled += [(v * s, m * s) for v, m in list(scaled) for s in opts.scales]
    if any(numbers_match(value, gold, opts.numeric_rel_tol) for value, _ in scaled for gold in gold_values):
        return Verdict(1.0, {"parsed": 1.0})
    if pred.decimals is not None and pred.decimals >= 1 and pred.significant >= 2:  # stated precision: rounding
        for value, unit in scaled:
            for gold in gold_values:
                if any(rounds_to(value / unit, target / unit, pred.decimals, pred.significant)
                       for target in (gold, gold * 100.0, gold / 100.0)):
                    return Verdict(1.0, {"parsed": 1.0})
    return Verdict(0.0, {"parsed": 1.0})


_LETTERS = "A-J"  # Sample.choices allows up to 10 options
_GOLD_LETTER_RE = re.compile(rf"^(?:the\s+(?:correct\s+)?answer\s+is\s*:?\s*)?\(?\s*([{_LETTERS}])\s*\)?\.?$", re.IGNORECASE)
_LETTER_ONLY_RE = re.compile(rf"^\(?\s*([{_LETTERS}])\s*\)?[.:]?$", re.IGNORECASE)
_LETTER_PREFIX_RE = re.compile(rf"^(?:\(\s*([{_LETTERS}])\s*\)|([{_LETTERS.upper()}])[.):])(?:\s|$)", re.IGNORECASE)
# Another option named after the first: a bracketed letter anywhere, or after a list separator a bare
# upper-case letter that ends the text or is followed by another separator ("(B) or C", "(B), C.").
_BRACKETED_LETTER_RE = re.compile(rf"\(\s*([{_LETTERS}])\s*\)", re.IGNORECASE)
_LISTED_LETTER_RE = re.compile(rf"(?:(?<!\w)(?:or|and|vs|nor)(?!\w)|[,/;&|])\s*([{_LETTERS.upper()}])[.)]?\s*"
                               rf"(?=$|(?:or|and|vs|nor)(?!\w)|[,/;&|])", re.IGNORECASE)


def parse_choice_letter(text: str) -> str | None:
    """The option letter a prediction names, upper case, or None.

    A bare letter may be any case ("b", "(b)", "B."); a letter followed by text must be bracketed
    ("(b) Paris") or an upper-case letter with ".", ")" or ":" ("B. Paris"), so "a cat" or
    "I think" name no option.
    """
    text = text.strip()
    match = _LETTER_ONLY_RE.match(text)
    if match:
        return match.group(1).upper()
    match = _LETTER_PREFIX_RE.match(text)
    if match is None:
        return None
    if match.group(1):
        return match.group(1).upper()
    letter = match.group(2)
    return letter if letter.isupper() else None


@VERIFIERS.register("choice")
def verify_choice(prediction: str, golds: list[str], opts: VerifyOptions) -> Verdict:
    """The option letter of the prediction equals a gold letter (gold may be "(B)" or "B")."""
    letters = set()
    for gold in golds:
        match = _GOLD_LETTER_RE.match(gold.strip())
        if match is None:
            raise GoldError(f"gold answer {gold!r} is not an option letter A-J")
        letters.add(match.group(1).upper())
    letter = parse_choice_letter(prediction)
    if letter is not None and other_letters(prediction, letter):
        return Verdict(0.0, {"parsed": 1.0})     # hedges between options
    return Verdict(1.0 if letter in letters else 0.0, {"parsed": 0.0 if letter is None else 1.0})


def other_letters(prediction: str, letter: str) -> set[str]:
    """Option letters other than `letter` that a prediction also names (bracketed, or listed after a separator)."""
    named = {m.group(1).upper() for m in _BRACKETED_LETTER_RE.finditer(prediction)}
    named |= {m.group(1) for m in _LISTED_LETTER_RE.finditer(prediction) if m.group(1).isupper()}
    return named - {letter}
