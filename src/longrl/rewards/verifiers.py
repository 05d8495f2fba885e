"""Rule verifiers: is an extracted prediction one of the gold answers? A registry keyed by name.

    verify = VERIFIERS.get(TASKS.get("multihop").verifier)      # "qa"
    verify("the Eiffel Tower", ["Eiffel Tower"], VerifyOptions())
    # Verdict(score=1.0, metrics={'em': 1.0, 'f1': 1.0})

A verifier is `(prediction: str, golds: list[str], opts: VerifyOptions) -> Verdict`. Any gold
matching counts. Golds are read before the prediction, so a gold the verifier cannot use (no number
for "numeric", no letter for "choice") raises `GoldError` whatever the prediction, including "".
New verifiers plug in with `@VERIFIERS.register("name")` and a task naming them in
`longrl.data.tasks.TASKS`.

- "qa": SQuAD normalisation, then the published two-way containment (gold in prediction or
  prediction in gold) on whole words; an empty normalised prediction never matches. Reports em, f1.
- "numeric": the first number of the prediction equals a gold number within `rel_tol` (exact for a
  gold of 0), also x100 or /100; unit words count both ways ("3.5 million" is 3.5 and 3,500,000).
- "choice": a letter from "(B)", "B", "B.", "b", "(b) Paris", "B: Paris" against the gold letter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from longrl.errors import UserError
from longrl.registry import Registry
from longrl.rewards.numbers import numbers_match, parse_first_number
from longrl.rewards.text import normalize_answer, token_f1, two_way_match


class GoldError(UserError):
    """A gold answer the task's verifier cannot use (bad data, not a model failure)."""


@dataclass(frozen=True)
class VerifyOptions:
    numeric_rel_tol: float = 0.0015  # docmath relative tolerance (0.15%, as published)

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
    """Two-way word-boundary containment after SQuAD normalisation; em and f1 in metrics."""
    normalized_golds = [normalize_answer(g) for g in golds]
    if not any(normalized_golds):
        raise GoldError(f"every gold answer normalises to nothing (articles/punctuation only): {golds!r}")
    pred = normalize_answer(prediction)
    score = em = f1 = 0.0
    for gold in normalized_golds:
        if not gold:
            continue
        if two_way_match(pred, gold):
            score = 1.0
        if pred and pred == gold:
            em = 1.0
        f1 = max(f1, token_f1(pred, gold))
    return Verdict(score, {"em": em, "f1": f1})


@VERIFIERS.register("numeric")
def verify_numeric(prediction: str, golds: list[str], opts: VerifyOptions) -> Verdict:
    """The first number of the prediction against each gold number (tolerance, x100, /100)."""
    gold_values = []
    for gold in golds:
        parsed = parse_first_number(gold)
        if parsed is None:
            raise GoldError(f"gold answer {gold!r} has no number a numeric task can compare with")
        gold_values.extend(parsed.candidates())
    pred = parse_first_number(prediction)
    if pred is None:
        return Verdict(0.0, {"parsed": 0.0})
    correct = any(numbers_match(p, g, opts.numeric_rel_tol) for p in pred.candidates() for g in gold_values)
    return Verdict(1.0 if correct else 0.0, {"parsed": 1.0})


_LETTERS = "A-J"  # Sample.choices allows up to 10 options
_GOLD_LETTER_RE = re.compile(rf"^(?:the\s+(?:correct\s+)?answer\s+is\s*:?\s*)?\(?\s*([{_LETTERS}])\s*\)?\.?$", re.IGNORECASE)
_LETTER_ONLY_RE = re.compile(rf"^\(?\s*([{_LETTERS}])\s*\)?[.:]?$", re.IGNORECASE)
_LETTER_PREFIX_RE = re.compile(rf"^(?:\(\s*([{_LETTERS}])\s*\)|([{_LETTERS.upper()}])[.):])(?:\s|$)", re.IGNORECASE)


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
    return Verdict(1.0 if letter in letters else 0.0, {"parsed": 0.0 if letter is None else 1.0})
