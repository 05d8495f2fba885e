"""The two protocols side by side: a table of every class of difference with the published scripts
(holes strict closes, regressions strict must not have), then the published rules' own pieces.

Each row: (task, response, golds, document, published score, strict score, reason). Responses are
scored through HybridReward, as `longrl score` and `longrl eval` do.
"""

from __future__ import annotations

import pytest

from longrl.config.reward import RewardConfig
from longrl.rewards.hybrid import HybridReward, RewardInput
from longrl.rewards.published import (
    choice_letter,
    docmath_equal,
    docmath_judge_prediction,
    docmath_literal,
    published_rule,
    qa_normalize,
    qa_prediction,
    read_docmath_literal,
)
from longrl.rewards.verifiers import GoldError

T = "<think>reading the document</think>"
THOUSANDS = "Table 4. Operating results (in thousands)"
MILLIONS = "All figures ($ in millions)."

PROTOCOL_CASES = [
    # -- published holes that strict closes ----------------------------------------------------------
    ("qa", T + "Therefore, the answer is The.", ["Paris"], "", 1.0, 0.0,
     "HOLE: a prediction normalising to nothing is inside every gold"),
    ("qa", T + "Therefore, the answer is yesterday", ["yes"], "", 1.0, 0.0, "HOLE: a gold inside another word"),
    ("qa", T + "Therefore, the answer is Lyon", ["Paris", "Lyon"], "", 0.0, 1.0, "published scores answers[0] only"),
    ("docmath", T + "Therefore, the answer is 2500", ["2.5"], "", 1.0, 0.0, "HOLE: any power-of-ten rescaling"),
    ("docmath", T + "Therefore, the answer is -5", ["5"], "", 1.0, 0.0, "HOLE: signs ignored"),
    ("docmath", T + "Therefore, the answer is 0.1", ["0.9"], "", 0.0, 0.0, "both: plainly wrong"),
    ("docmath", T + "Therefore, the answer is " + "1" * 400, ["5"], "", 0.0, 0.0,
     "published crashes (OverflowError) on a 400-digit number; longrl scores 0 in both"),
    ("docmath", T + "Therefore, the answer is __import__('os').getpid()", ["0"], "", 0.0, 0.0,
     "code is never evaluated (the published regex needs a digit; strict reads no number from code)"),
    ("docmath", T + "Therefore, the answer is 5. Checking: the answer is 7.", ["7"], "", 0.0, 1.0,
     "published DocMath takes the FIRST 'the answer is', strict the last"),
    ("qa", T + "The answer is Paris.", ["Paris"], "", 0.0, 1.0, "published QA needs lower-case 'the answer is'"),
    ("qa", "Therefore, the answer is Paris.", ["Paris"], "", 1.0, 0.0,
     "no </think>: published reads the whole response, strict (require_think) has no answer"),
    ("choice", T + "The correct answer is Because of the clause", ["B"], "", 1.0, 0.0,
     "published choice reads the B of 'Because'"),
    ("choice", T + "The correct answer is (b)", ["B"], "", 0.0, 1.0, "published choice needs an upper-case letter"),
    # -- regressions strict must not have (published gives credit; so must strict) ----------------------
    ("qa", T + "Therefore, the answer is Ian Fleming's", ["Ian Fleming"], "", 1.0, 1.0, "a possessive"),
    ("qa", T + "Therefore, the answer is <b>Scott Derrickson</b>", ["Scott Derrickson"], "", 1.0, 1.0, "HTML tags"),
    ("qa", T + "Therefore, the answer is Americans", ["American"], "", 1.0, 1.0, "a plural demonym"),
    ("qa", T + "Therefore, the answer is the Americans", ["America"], "", 1.0, 1.0, "a demonym for its country"),
    ("qa", T + "Therefore, the answer is 3rd", ["3"], "", 1.0, 1.0, "an ordinal for its number"),
    ("qa", T + "Therefore, the answer is the 3rd", ["third"], "", 0.0, 1.0, "an ordinal in digits for its word"),
    ("docmath", T + "Therefore, the answer is 0.26", ["0.2573"], "", 1.0, 1.0, "rounded to the two decimals it states"),
    ("docmath", T + "Therefore, the answer is 12.5", ["12.47"], "", 0.0, 1.0, "rounded to one decimal (strict reads its precision)"),
    ("docmath", T + "Therefore, the answer is 2500", ["2500000"], THOUSANDS, 1.0, 1.0, "the unit of a table 'in thousands'"),
    ("docmath", T + "Therefore, the answer is $2.5 billion", ["2500"], MILLIONS, 1.0, 1.0, "billions for a gold 'in millions'"),
    ("docmath", T + "Therefore, the answer is 2500", ["2500000"], "", 1.0, 0.0,
     "no unit stated anywhere: strict gives no x1000 (published: any power of ten)"),
    ("docmath", T + "Therefore, the answer is 12.5%", ["0.125"], "", 1.0, 1.0, "percent for a fraction (both)"),
]


def _score(protocol: str, task: str, response: str, golds: list[str], document: str) -> float:
    reward = HybridReward(RewardConfig(protocol=protocol))
    return reward.score([RewardInput(task=task, question="Which one?", answers=golds, response=response,
                                     context=document)])[0].rule_score


@pytest.mark.parametrize("task,response,golds,document,published,strict,reason", PROTOCOL_CASES,
                         ids=[c[-1][:60] for c in PROTOCOL_CASES])
def test_protocol_table(task, response, golds, document, published, strict, reason):
    assert _score("published", task, response, golds, document) == published, reason
    assert _score("strict", task, response, golds, document) == strict, reason


def test_every_class_of_the_issue_is_in_the_table():
    reasons = " ".join(c[-1] for c in PROTOCOL_CASES)
    for phrase in ("normalising to nothing", "another word", "power-of-ten", "signs", "400-digit", "evaluated",
                   "FIRST", "possessive", "HTML", "demonym", "ordinal", "two decimals", "thousands", "millions",
                   "answers[0]"):
        assert phrase in reasons, phrase


# ---- the published rules' pieces ------------------------------------------------------------------

LITERAL_CASES = [
    ("$1234.5", 1234.5, "currency (commas are gone from a literal already)"),
    ("=-12", -12, "an equals sign is dropped"),
    (".5", 5, "one leading point is dropped before digits, as the script's unit rule does"),
    ("..5", 5, "two leading points too"),
    ("-.5", -0.5, "a signed point number is a float"),
    ("007", 0, "leading zeros: Python refuses the literal, the script falls back to 0"),
    ("007.5", 7.5, "leading zeros are fine in a float literal"),
    ("00", 0, "all zeros is a valid integer"),
    ("1.2.3", 0, "several points: not a literal, 0"),
    ("-", 0, "a lone sign: 0"),
    ("%", 0, "symbols only: 0"),
    ("1" * 4301, 0, "over Python's 4,300-digit limit: 0"),
    ("1" * 400, int("1" * 400), "a long integer is read exactly"),
]


@pytest.mark.parametrize("literal,value,reason", LITERAL_CASES, ids=[c[-1] for c in LITERAL_CASES])
def test_read_docmath_literal(literal, value, reason):
    read = read_docmath_literal(literal)
    assert read == value and type(read) is type(value), reason


def test_docmath_literal_is_the_first_and_reads_like_the_script():
    assert docmath_literal("so (the answer is) 5, but the answer is 7") == "5"
    assert docmath_literal("THE ANSWER IS $1,200.") == "$1200"
    assert docmath_literal("the answer is approximately 5") is None
    assert docmath_literal("the answer is: 5") is None
    assert docmath_literal("Therefore, the answer is 2.5e-05.") == "2.5"   # a gold written by str(float)


@pytest.mark.parametrize("prediction,gold,equal", [
    (5, 500, True), (0.05, 5, True), (-5, 5, True), (2.5, 2500000, True),   # powers of ten, signs ignored
    (0.26, 0.2573, True), (0.25, 0.2573, False),                            # two decimals rounded UP
    (100.1, 100, True), (100.2, 100, False), (0, 0, True), (0, 0.001, False),
    (1.2, 0.012, True), (12.0, 0.012, True), (3, 7, False),
])
def test_docmath_equal(prediction, gold, equal):
    assert docmath_equal(prediction, gold) is equal


def test_docmath_overflow_scores_zero_instead_of_crashing():
    with pytest.raises(OverflowError):
        docmath_equal(int("1" * 400), 5)
    extraction, verdict = published_rule("numeric", T + "Therefore, the answer is " + "9" * 400, ["5"])
    assert verdict.score == 0.0 and extraction.status == "ok"
    extraction, verdict = published_rule("numeric", T + "Therefore, the answer is " + "9" * 400 + ".5", ["5"])
    assert verdict.score == 0.0   # an infinite float: the script's int(inf) raises


def test_qa_prediction_and_normalisation():
    assert qa_prediction("<think>the answer is x</think>so the answer is **Paris**.\nI hope it helps.") == \
        "Paris.\nI hope it helps"
    assert qa_prediction("<think>a</think>") is None
    assert qa_prediction("no think; the answer is Rome.") == "Rome"
    assert qa_prediction("<think>a</think>the answer is 42<\uff5cend\u2581of\u2581sentence\uff5c>") == "42"
    assert qa_normalize("The \u201cEiffel\u201d Tower!") == "\u201ceiffel\u201d tower"   # ASCII punctuation only


def test_choice_letter():
    assert choice_letter(T + "The correct answer is B, then The correct answer is (C)") == "C"   # bracketed first
    assert choice_letter("The correct answer is (B)") is None                                    # no </think>
    assert choice_letter(T + "the correct answer is (B)") is None                                 # exact case


def test_published_golds_and_metrics():
    extraction, verdict = published_rule("qa", T + "Therefore, the answer is the Eiffel Tower in Paris", ["Eiffel Tower"])
    assert verdict.score == 1.0 and verdict.metrics == {"em": 0.0, "f1": 0.67} and extraction.prediction
    assert published_rule("qa", T + "Therefore, the answer is yes", ["no"])[1].metrics["f1"] == 0.0
    with pytest.raises(GoldError):
        published_rule("qa", T + "x", ["The"])
    with pytest.raises(GoldError):
        published_rule("numeric", T + "x", ["about half"])
    with pytest.raises(GoldError):
        published_rule("choice", T + "x", ["Paris"])
    assert published_rule("numeric", "<think>x", ["5"])[0].status == "unfinished_think"


def test_qa_f1_matches_a_reference_loop():
    import random
    from collections import Counter

    from longrl.rewards.published import qa_f1

    def reference(pred: str, gold: str) -> float:
        if (pred in ("yes", "no", "noanswer") or gold in ("yes", "no", "noanswer")) and pred != gold:
            return 0.0
        same = sum((Counter(pred.split()) & Counter(gold.split())).values())
        if same == 0:
            return 0.0
        p, r = same / len(pred.split()), same / len(gold.split())
        return 2 * p * r / (p + r)

    rng = random.Random(0)
    for _ in range(3000):
        pred = " ".join(rng.choice(["a", "b", "ab", "yes", "no", "c"]) for _ in range(rng.randint(0, 6)))
        gold = " ".join(rng.choice(["a", "b", "ab", "yes", "c"]) for _ in range(rng.randint(1, 4)))
        assert qa_f1(pred, gold) == pytest.approx(reference(pred, gold)), (pred, gold)
    assert qa_normalize("The Caf\u00e9, (an) \u0661\u0662!") == "caf\u00e9 \u0661\u0662"


def test_docmath_phrase_search_folds_case_like_the_script():
    import re
    import sys

    from longrl.rewards.published import _FOLDS_TO_PHRASE_LETTERS

    everything = "".join(chr(c) for c in range(128, sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    folding = set(re.findall(r"[theanswri]", everything, re.IGNORECASE))
    assert folding == set(_FOLDS_TO_PHRASE_LETTERS)
    assert docmath_literal("THE ANSWER IS 5") == "5" and docmath_literal("the an\u017fwer is 6") == "6"
    assert docmath_literal("The Answer \u0130s 7") == "7"


def test_qa_normalize_matches_the_regex_definition():
    import random
    import re
    import string

    def reference(text: str) -> str:
        text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
        return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())

    rng = random.Random(2)
    pieces = ["a", "an", "the", "The", "x", " ", "\n", ".", "\u201c", "\u2014", "_", "\u00e9", "1", "A."]
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        assert qa_normalize(text) == reference(text), repr(text)


JUDGE_PREDICTION_CASES = [
    (T + "Therefore, the answer is $1,250.", "$1250", "as the RL reward reads it: commas deleted, trailing point stripped"),
    (T + "The answer is **12.5**%", "12.5", "any case; asterisks removed"),
    (T + "Therefore, the answer is (12).", None, "parentheses are kept: nothing follows 'the answer is ' that reads"),
    (T + "Therefore, the answer is (.) or the answer is 7", "7", "the first literal that reads"),
    (T + "Therefore, the answer is ...", None, "a literal that cleans to nothing"),
    (T + "Therefore, the answer is twelve", None, "no number"),
    ("Therefore, the answer is 12.", None, "no </think>: the RL reward reads nothing"),
    ("<think>so the answer is 12</think>  ", None, "nothing after </think>"),
    ("<think>a</think>the answer is 3</think>Therefore, the answer is 7", "7", "after the LAST </think>"),
]


@pytest.mark.parametrize("response,expected,reason", JUDGE_PREDICTION_CASES, ids=[c[-1] for c in JUDGE_PREDICTION_CASES])
def test_docmath_judge_prediction(response, expected, reason):
    assert docmath_judge_prediction(response) == expected, reason
