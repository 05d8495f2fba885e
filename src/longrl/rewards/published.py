"""The `published` protocol: rule scoring as QwenLong-L1's published evaluation scripts score, so a
model's numbers can be set next to the paper's main table.

    extraction, verdict = published_rule("qa", response, golds)      # verifier name of the task
    extraction, verdict = published_rule("numeric", response, ["2500000"])

Written from the behaviour of the published scripts (`eval/<benchmark>.py`, and the training
reward for multiple choice, which has no evaluation script), never from their code. Per row:

Answer part (all tasks): the text after the last `</think>`, stripped. QA and DocMath fall back to
the whole response when there is no `</think>` or nothing after it; multiple choice scores 0 then.

QA ("qa" verifier: Frames, 2Wiki, HotpotQA, MuSiQue, NarrativeQA, Qasper):
- `*` removed; the prediction is everything after the LAST "the answer is" (exact case: "The
  answer is" does not count), over any number of lines, stripped, the DeepSeek chat tokens
  `<｜Assistant｜>` / `<｜end▁of▁sentence｜>` removed, then stripped of spaces and periods.
- Only the FIRST gold counts (LongBench's `answers[0]`, Frames' `Answer`).
- Normalisation: lower case, ASCII punctuation deleted, articles a/an/the dropped, whitespace
  collapsed. Score: normalised gold inside normalised prediction or the prediction inside the
  gold, as plain substrings (so "yesterday" contains "yes", and a prediction that normalises to
  nothing is inside every gold). Metrics: em, and token F1 (0 when either side is yes/no/noanswer
  and they differ), rounded to two decimals as published.

DocMath ("numeric" verifier):
- `*`, `(` and `)` removed; the FIRST "the answer is " (any case) followed by optional `=`, `≈`,
  backtick, `%`, `$`, `°`, `£`, `€`, `¥` (in that order), an optional `-` and a run of ASCII digits,
  points and commas; commas deleted, trailing points stripped. Nothing there: score 0.
- The gold is read the same way from "Therefore, the answer is {gold}." (so a gold written
  "2.5e-05" reads as 2.5, as it does there).
- Both are turned into numbers as the script's `eval` would read such a literal, without
  evaluating anything: symbols dropped; one or two leading points dropped before digits (".5"
  reads 5); an integer is read exactly (as a Python int), a literal with one point as a float; what
  Python would refuse (leading zeros "007", several points "1.2.3", a lone "-", more than 4,300
  digits) reads as 0, the script's fallback.
- Correct when any holds, in this order: one absolute value is the other times a power of ten (signs
  ignored); the smaller times 100, 1,000 or 100,000 is within 0.15% of the larger (each only when
  the smaller is at most 1/50, 1/500, 1/50,000 of the larger); both absolute values rounded UP
  to two decimals are equal; the prediction is within 0.15% of the gold.

Multiple choice ("choice" verifier; the published training reward):
- `*` removed; the first "The correct answer is (X)" (exact case), else the first "The correct
  answer is X", X one of A-D; compared with the first gold's letter ignoring case.

Exceptions, on purpose: nothing is ever evaluated as code (the script calls `eval` on DocMath
literals, which the regular expression limits to numbers: reading them is equivalent), and nothing
crashes: where the script raises (an OverflowError on a 400-digit number or an infinite float, an
assertion on a gold without a number) the row scores 0, or the gold is reported as bad data
(GoldError) before any scoring.

The LLM judge (when configured; its prompt is `reward.judge.prompt`, `judge.py`) is asked, as in
both protocols, when the rule says 0 and the task's verifier is in `reward.judge_verifiers`; what it
is shown, and the last condition, are the published RL reward's for DocMath (`docmath_judge_prediction`):
the number literal read as above from the text after the last `</think>` (no fallback to the whole
response) with only `*` removed (parentheses kept: "the answer is (12)" shows the judge nothing), and
asked only when there is one. QA and multiple choice show the judge the rule's prediction.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter

from longrl.rewards.extract import Extraction
from longrl.rewards.verifiers import GoldError, Verdict

THINK_CLOSE = "</think>"
_DEEPSEEK_TOKENS = ("<\uff5cAssistant\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>")
_PUNCTUATION = string.punctuation.encode()
# \b(a|an|the)\b written to start with a letter, so the engine jumps between "a"/"t" characters.
_ARTICLES_RE = re.compile(r"a(?<!\wa)n?(?!\w)|the(?<!\wthe)(?!\w)")
_YES_NO = ("yes", "no", "noanswer")
_DOCMATH_SYMBOLS = "=≈`%$°£€¥"
_DOCMATH_RE = re.compile("the answer is (" + "".join(re.escape(c) + "?" for c in _DOCMATH_SYMBOLS) + r"-?[0-9.,]+)",
                         re.IGNORECASE)
_DOCMATH_LOWER_RE = re.compile(_DOCMATH_RE.pattern)  # the same, case-sensitive: run on a lower-cased copy
# Non-ASCII characters re.IGNORECASE matches to a letter of "the answer is" (İ, ı, ſ); without them,
# lower-casing keeps every position and the case-sensitive search finds the same match, ~2x faster.
_FOLDS_TO_PHRASE_LETTERS = "\u0130\u0131\u017f"
_LEADING_POINTS_RE = re.compile(r"\.{1,2}(\d*\.*\d+)")
_CHOICE_BRACKETED_RE = re.compile(r"The correct answer is \(([A-D])\)")
_CHOICE_BARE_RE = re.compile(r"The correct answer is ([A-D])")
_GOLD_LETTER_RE = re.compile(r"^(?:the\s+(?:correct\s+)?answer\s+is\s*:?\s*)?\(?\s*([A-Ja-j])\s*\)?\.?$", re.IGNORECASE)
MAX_INT_DIGITS = 4300  # Python refuses to read longer integer literals (the script then falls back to 0)
RELATIVE_EPS = 0.0015  # the published 0.15%


def published_rule(verifier: str, response: str, golds: list[str]) -> tuple[Extraction, Verdict]:
    """Prediction and rule verdict of one response under the published protocol.

    Args:
        verifier: the task's verifier name ("qa", "numeric" or "choice").
        response: the model's full reply.
        golds: gold answers (QA and choice use the first, as published; DocMath has one).

    Returns:
        (Extraction, Verdict); GoldError when the first gold cannot be scored at all.
    """
    rule = _RULES.get(verifier)
    if rule is None:
        raise GoldError(f"the published protocol scores the qa, numeric and choice verifiers only, not {verifier!r}")
    if not golds:
        raise GoldError("no gold answer")
    return rule(response.strip(), golds)


def _answer_part(response: str) -> str | None:
    """Text after the last </think>, stripped; None without </think>."""
    head, found, tail = response.rpartition(THINK_CLOSE)
    return tail.strip() if found else None


def _status(prediction: str | None, response: str) -> Extraction:
    if prediction:
        return Extraction(prediction, "ok")
    return Extraction(None, "no_answer" if THINK_CLOSE in response else "unfinished_think")


# ---- QA -------------------------------------------------------------------------------------------

def qa_prediction(response: str) -> str | None:
    """What follows the last "the answer is" of the answer part (or of the whole response)."""
    text = (_answer_part(response) or response).replace("*", "")
    head, found, tail = text.rpartition("the answer is")
    if not found:
        return None
    tail = tail.strip()
    for token in _DEEPSEEK_TOKENS:
        tail = tail.replace(token, "")
    return tail.strip().strip(".").strip()


def qa_normalize(text: str) -> str:
    """Lower case, ASCII punctuation deleted, articles dropped, whitespace collapsed."""
    return " ".join(_ARTICLES_RE.sub(" ", delete_ascii_punctuation(text.lower())).split())


def delete_ascii_punctuation(text: str) -> str:
    """`text` without the ASCII punctuation characters, at C speed on any text: deleted from the
    UTF-8 bytes (no multi-byte sequence holds an ASCII byte; str.translate is slow off ASCII)."""
    raw = text.encode("utf-8", "surrogatepass")
    return raw.translate(None, _PUNCTUATION).decode("utf-8", "surrogatepass")


def qa_f1(prediction: str, gold: str) -> float:
    """Token F1 of normalised strings; 0 when one side is yes/no/noanswer and they differ.

    Counts each gold word's occurrences in the prediction with `str.count` (words padded by their
    own spaces), so a prediction of 200,000 words costs a few C scans, not a Python loop.
    """
    if (prediction in _YES_NO or gold in _YES_NO) and prediction != gold:
        return 0.0
    if not prediction or not gold:
        return 0.0
    padded = " " + prediction.replace(" ", "  ") + " "
    same = sum(min(count, padded.count(f" {token} ")) for token, count in Counter(gold.split()).items())
    if same == 0:
        return 0.0
    precision, recall = same / (prediction.count(" ") + 1), same / (gold.count(" ") + 1)
    return 2 * precision * recall / (precision + recall)


def _qa_rule(response: str, golds: list[str]) -> tuple[Extraction, Verdict]:
    gold = qa_normalize(golds[0])
    if not gold:
        raise GoldError(f"the first gold answer normalises to nothing (it would match every prediction): {golds[0]!r}")
    extraction = _status(qa_prediction(response), response)
    if extraction.prediction is None:
        return extraction, Verdict(0.0, {"em": 0.0, "f1": 0.0})
    pred = qa_normalize(extraction.prediction)
    score = 1.0 if gold in pred or pred in gold else 0.0
    return extraction, Verdict(score, {"em": float(pred == gold), "f1": round(qa_f1(pred, gold), 2)})


# ---- DocMath ----------------------------------------------------------------------------------------

def docmath_literal(text: str, drop: str = "*()") -> str | None:
    """The literal after the first "the answer is " (commas deleted, trailing points stripped); None if none.

    `drop`: characters deleted first (the evaluation script's "*()"; the RL reward's judge step "*").
    """
    for ch in drop:
        text = text.replace(ch, "")
    if any(ch in text for ch in _FOLDS_TO_PHRASE_LETTERS):
        match = _DOCMATH_RE.search(text)
    else:
        match = _DOCMATH_LOWER_RE.search(text.lower())
        match = match and _DOCMATH_RE.match(text, match.start())
    return match.group(1).replace(",", "").rstrip(".") if match else None


def docmath_judge_prediction(response: str) -> str | None:
    """What the judge is shown for a DocMath response under the published protocol; None: it is not asked.

    The condition of QwenLong-L1's RL reward (verl/verl/utils/reward_score/docmath.py in
    Tongyi-Zhiwen/QwenLong-L1), which asks its judge only when all hold: (1) the response has a
    `</think>` with text after the last one; (2) that text, `*` removed (parentheses kept), has a
    "the answer is " literal that is not empty once commas are deleted and trailing points stripped;
    (3) the rule did not find it correct. This returns the literal of (1)-(2), the judge's "Answer 1";
    the caller checks (3) with its own rule score, the published evaluation rule. The RL reward's copy
    of that rule rounds up to three decimals where it rounds up to two and compares the logs of the
    values where it takes the log of their ratio: where the two disagree it is the evaluation rule
    that says correct (so the judge could not change the score), except on float edge cases of the
    power-of-ten test.

    Example: "<think>.</think>Therefore, the answer is $1,250." -> "$1250"; "... the answer is (12)" -> None;
    "the answer is 12" without `</think>` -> None.
    """
    part = _answer_part(response)
    return (docmath_literal(part, drop="*") or None) if part else None


def read_docmath_literal(literal: str) -> int | float:
    """The number a DocMath literal stands for, read as the script's `eval` would (0 where it fails).

    Example: "$1234.5" -> 1234.5, "=-12" -> -12, ".5" -> 5, "007" -> 0, "1.2.3" -> 0, "%" -> 0.
    """
    text = literal.strip().rstrip(".")
    for symbol in "£€¥":
        text = text.replace(symbol, "")
    for separator in "=≈":
        if separator in text:
            text = text.split(separator)[-1].strip()
    for symbol in "`%$°":
        text = text.replace(symbol, "")
    points = _LEADING_POINTS_RE.fullmatch(text)
    if points:
        text = points.group(1)
    return _python_number(text or "0")


def _python_number(text: str) -> int | float:
    """`text` (an optional "-" then digits and points) as a Python literal would read; 0 if it would not."""
    negative = text.startswith("-")
    body = text[1:] if negative else text
    if not body or body.count(".") > 1 or not body.replace(".", "").isdigit() or not body.replace(".", "").isascii():
        return 0
    if "." in body:
        if body == ".":
            return 0
        value: int | float = float(body)
    else:
        if (len(body) > 1 and body[0] == "0" and body.strip("0")) or len(body) > MAX_INT_DIGITS:
            return 0  # "007" is not a Python integer literal; a 4,301-digit one is refused
        value = int(body)
    return -value if negative else value


def _within_eps(prediction, gold) -> bool:
    eps = abs(gold) * RELATIVE_EPS
    return gold - eps <= prediction <= gold + eps


def _ceil_two_decimals(value) -> float:
    return math.ceil(value * 100) / 100


def docmath_equal(prediction: int | float, gold: int | float) -> bool:
    """The published numeric comparison (module docstring); OverflowError where the script would raise."""
    large, small = max(abs(gold), abs(prediction)), min(abs(gold), abs(prediction))
    if large != 0 and small != 0:
        ratio = math.log10(large / small)
        if int(ratio) == ratio:
            return True
    for divisor, factor in ((50, 100), (500, 1000), (50000, 100000)):
        if small <= large / divisor and _within_eps(small * factor, large):
            return True
    if _ceil_two_decimals(large) == _ceil_two_decimals(small):
        return True
    return _within_eps(prediction, gold)


def _docmath_rule(response: str, golds: list[str]) -> tuple[Extraction, Verdict]:
    gold_literal = docmath_literal(f"Therefore, the answer is {golds[0]}.")
    if gold_literal is None:
        raise GoldError(f"gold answer {golds[0]!r} has no number the published DocMath rule can read")
    literal = docmath_literal(_answer_part(response) or response)
    extraction = _status(literal, response)
    if extraction.prediction is None:
        return extraction, Verdict(0.0, {"parsed": 0.0})
    try:
        correct = docmath_equal(read_docmath_literal(literal), read_docmath_literal(gold_literal))
    except OverflowError:  # the script crashes here; a number too large to compare is not correct
        correct = False
    return extraction, Verdict(1.0 if correct else 0.0, {"parsed": 1.0})


# ---- multiple choice ----------------------------------------------------------------------------------

def choice_letter(response: str) -> str | None:
    """The option letter A-D of the answer part, as published; None without </think> or a letter."""
    part = _answer_part(response)
    if not part:
        return None
    part = part.replace("*", "")
    match = _CHOICE_BRACKETED_RE.search(part) or _CHOICE_BARE_RE.search(part)
    return match.group(1) if match else None


def _choice_rule(response: str, golds: list[str]) -> tuple[Extraction, Verdict]:
    gold = _GOLD_LETTER_RE.match(golds[0].strip())
    if gold is None:
        raise GoldError(f"gold answer {golds[0]!r} is not an option letter A-J")
    letter = choice_letter(response)
    extraction = _status(letter, response)
    if letter is None:
        return extraction, Verdict(0.0, {"parsed": 0.0})
    return extraction, Verdict(1.0 if letter.lower() == gold.group(1).lower() else 0.0, {"parsed": 1.0})


_RULES = {"qa": _qa_rule, "numeric": _docmath_rule, "choice": _choice_rule}
