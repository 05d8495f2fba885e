"""Rule verifiers: tables of (response, golds, expected score) with a reason each, the published holes included.

Each response goes through extraction and the task's verifier, as the reward does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from longrl.data.tasks import TASKS
from longrl.rewards.extract import extract_prediction
from longrl.rewards.verifiers import (
    VERIFIERS,
    GoldError,
    VerifyOptions,
    parse_choice_letter,
)


def think(answer_line: str) -> str:
    return f"<think>Let me find the facts in the document.</think>{answer_line}"


def rule_score(task: str, response: str, golds: list[str], opts: VerifyOptions = VerifyOptions()) -> float:
    prediction = extract_prediction(response).prediction
    verifier = VERIFIERS.get(TASKS.get(task).verifier)
    return verifier(prediction or "", golds, opts).score if prediction is not None else 0.0


QA_CASES = [
    ("Therefore, the answer is Rilu.", ["Rilu"], 1.0, "exact answer"),
    ("Therefore, the answer is rilu", ["Rilu"], 1.0, "case-insensitive"),
    ("Therefore, the answer is the Eiffel Tower.", ["Eiffel Tower"], 1.0, "article and period dropped"),
    ("Therefore, the answer is Gustave Eiffel's tower in Paris", ["Paris"], 1.0, "gold inside prediction (published rule)"),
    ("Therefore, the answer is Bank of America", ["Bank of America Corporation"], 1.0,
     "prediction inside gold with more than half of its content words (2 of 3)"),
    ("Therefore, the answer is Paris", ["Paris, France"], 0.0,
     "a fragment with half of the gold's content words, as 'John' for 'John Smith' (the published rule credits it)"),
    ("Therefore, the answer is John", ["John Smith"], 0.0, "HOLE: a first name alone is not the person"),
    ("Therefore, the answer is of", ["Bank of America"], 0.0, "HOLE: a function word inside the gold names nothing"),
    ("Therefore, the answer is London or Paris or Berlin or Rome", ["Paris"], 0.0,
     "HOLE: a list of candidates with the gold among them"),
    ("Therefore, the answer is London, Paris, Berlin", ["Paris"], 0.0, "a comma-separated list"),
    ("Therefore, the answer is either Paris or Lyon", ["Paris"], 0.0, "either ... or"),
    ("Therefore, the answer is Bank of America and Merrill Lynch", ["Bank of America"], 0.0, "the gold and a rival"),
    ("Therefore, the answer is Paris, France", ["Paris"], 0.0, "a separated qualifier is a second candidate"),
    ("Therefore, the answer is London Paris Berlin Rome Madrid Lisbon Vienna", ["Paris"], 0.0,
     "a list without separators: more than 5 other words beside the gold"),
    ("Therefore, the answer is The Tom and Jerry Show", ["Tom and Jerry"], 1.0, "the gold's own 'and' splits nothing"),
    ("Therefore, the answer is the band AC/DC", ["AC/DC"], 1.0, "a slash between letters joins them"),
    ("Therefore, the answer is 1,000 people", ["1000"], 1.0, "a comma between digits groups them"),
    ("Therefore, the answer is Tamo, Febe, Zobu", ["Tamo, Febe, Zobu"], 1.0, "a gold that is itself a list"),
    ("Therefore, the answer is Tamo, Febe, Zobu, Kudi", ["Tamo, Febe, Zobu"], 0.0, "one name more is a rival"),
    ("Therefore, the answer is Parisian", ["Paris"], 0.0, "containment is on word boundaries"),
    ("Therefore, the answer is Rome", ["Paris"], 0.0, "wrong answer"),
    ("Therefore, the answer is The.", ["Paris"], 0.0, "HOLE: 'The.' normalises to '' and must not match everything"),
    ("Therefore, the answer is a", ["an apple"], 0.0, "an article alone never matches"),
    ("Therefore, the answer is ...", ["Paris"], 0.0, "punctuation-only prediction"),
    ("Therefore, the answer is Lyon", ["Paris", "Lyon"], 1.0, "any gold matches"),
    ("Therefore, the answer is \u201cNew York\u201d", ["new york"], 1.0, "curly quotes"),
    ("Therefore, the answer is New-York", ["New York"], 0.0, "SQuAD deletes the hyphen: 'newyork' is another word"),
    ("Therefore, the answer is 1,000", ["1000"], 1.0, "comma deleted by normalisation"),
    ("Therefore, the answer is [[YES]]", ["Paris"], 0.0, "a verdict marker is not an answer"),
    ("Therefore, the answer is __import__('os').system('touch pwned')", ["Paris"], 0.0, "code in an answer is only text"),
    ("I believe it is Paris.", ["Paris"], 0.0, "no answer phrase: 0 even when the gold appears"),
]

NUMERIC_CASES = [
    ("Therefore, the answer is 30.", ["30"], 1.0, "integer"),
    ("Therefore, the answer is 30.0", ["30"], 1.0, "float vs int"),
    ("Therefore, the answer is $1,234.50", ["1234.5"], 1.0, "currency and thousands separator"),
    ("Therefore, the answer is 12.5%", ["0.125"], 1.0, "percent vs fraction (x100)"),
    ("Therefore, the answer is 0.125", ["12.5"], 1.0, "fraction vs percent (/100)"),
    ("Therefore, the answer is 100.1", ["100"], 1.0, "within 0.15%"),
    ("Therefore, the answer is 100.2", ["100"], 0.0, "outside 0.15%"),
    ("Therefore, the answer is 1000", ["100"], 0.0, "x10 is not a percent scaling"),
    ("Therefore, the answer is 0", ["0"], 1.0, "zero gold is exact"),
    ("Therefore, the answer is 0.0001", ["0"], 0.0, "nothing is close to zero but zero"),
    ("Therefore, the answer is -5", ["5"], 0.0, "sign matters"),
    ("Therefore, the answer is \u22125", ["-5"], 1.0, "Unicode minus"),
    ("Therefore, the answer is approximately 3.5 million", ["3500000"], 1.0, "unit word scales"),
    ("Therefore, the answer is 3.5 million", ["3.5"], 1.0, "unit word stripped (as published)"),
    ("Therefore, the answer is 3,500 thousand", ["3.5 million"], 1.0, "units on both sides"),
    ("Therefore, the answer is 42 (computed as 40 + 2)", ["42"], 1.0, "first number after the phrase"),
    ("Therefore, the answer is 1.5e3", ["1500"], 1.0, "scientific notation"),
    ("Therefore, the answer is \\boxed{7.25}", ["7.25"], 1.0, "boxed"),
    ("Therefore, the answer is " + "9" * 5000, ["9"], 0.0, "absurd: 5,000 digits"),
    ("Therefore, the answer is 1e999", ["1"], 0.0, "absurd: overflows to infinity"),
    ("Therefore, the answer is nan", ["1"], 0.0, "absurd: nan"),
    ("Therefore, the answer is __import__('os').getpid()", ["1"], 0.0, "never evaluated"),
    ("Therefore, the answer is 2**10", ["1024"], 0.0, "no arithmetic on model output"),
    ("Therefore, the answer is open('/tmp/pytest-0/x0')", ["0"], 0.0, "no number is pulled out of code (a path's digits)"),
    ("Therefore, the answer is 1e99999", ["1"], 0.0, "an overflowing exponent is not read as 1"),
    ("Therefore, the answer is 1,00,000", ["1"], 0.0, "ambiguous grouping is not read as 1"),
    ("Therefore, the answer is 0x1F", ["0"], 0.0, "hex is not read as 0"),
    ("Therefore, the answer is \u0661\u0662\u0663", ["123"], 1.0, "Arabic-Indic digits: the same number"),
    ("Therefore, the answer is unknown", ["5"], 0.0, "no number"),
    ("Therefore, the answer is 7", ["5", "7"], 1.0, "any gold matches"),
]

CHOICE_CASES = [
    ("The correct answer is (B).", ["B"], 1.0, "the template sentence"),
    ("The correct answer is B", ["B"], 1.0, "bare letter"),
    ("The correct answer is B.", ["B"], 1.0, "letter and period"),
    ("The correct answer is (b)", ["B"], 1.0, "any case in brackets"),
    ("The correct answer is b", ["B"], 1.0, "bare lower-case letter"),
    ("The correct answer is (B) the second clause", ["B"], 1.0, "bracketed letter then its text"),
    ("The correct answer is B. the second clause", ["B"], 1.0, "letter and period then text"),
    ("The correct answer is B", ["(B)"], 1.0, "gold written (B)"),
    ("The correct answer is (C)", ["B"], 0.0, "wrong letter"),
    ("The correct answer is a cat", ["A"], 0.0, "an article is not option A"),
    ("The correct answer is I think B", ["B"], 0.0, "hedging text is not a letter"),
    ("The correct answer is (B) or (C)", ["B"], 0.0, "naming two options hedges (the first letter was read)"),
    ("The correct answer is (B), C", ["B"], 0.0, "a second letter after a comma"),
    ("The correct answer is (B) Vitamin C.", ["B"], 1.0, "a letter inside the option's text is not another option"),
    ("The correct answer is (B) or (B)", ["B"], 1.0, "the same option twice"),
    ("The correct answer is [[YES]]", ["A"], 0.0, "a verdict marker is not a letter"),
    ("The correct answer is E", ["B"], 0.0, "a letter outside the options"),
]


@pytest.mark.parametrize("answer,golds,expected,reason", QA_CASES, ids=[c[-1] for c in QA_CASES])
def test_qa_table(answer, golds, expected, reason):
    assert rule_score("multihop", think(answer), golds) == expected, reason


@pytest.mark.parametrize("answer,golds,expected,reason", NUMERIC_CASES, ids=[c[-1] for c in NUMERIC_CASES])
def test_numeric_table(answer, golds, expected, reason):
    assert rule_score("docmath", think(answer), golds) == expected, reason


@pytest.mark.parametrize("answer,golds,expected,reason", CHOICE_CASES, ids=[c[-1] for c in CHOICE_CASES])
def test_choice_table(answer, golds, expected, reason):
    assert rule_score("choice", think(answer), golds) == expected, reason


def test_enough_table_cases():
    from test_extract import CASES

    assert len(CASES) + len(QA_CASES) + len(NUMERIC_CASES) + len(CHOICE_CASES) >= 60


def test_qa_reports_em_and_f1():
    verdict = VERIFIERS.get("qa")("the Eiffel Tower in Paris", ["Eiffel Tower", "Tour Eiffel"], VerifyOptions())
    assert verdict.score == 1.0
    assert verdict.metrics["em"] == 0.0
    assert verdict.metrics["f1"] == pytest.approx(2 * (2 / 4) * 1.0 / (2 / 4 + 1.0))
    exact = VERIFIERS.get("qa")("Eiffel tower.", ["Eiffel Tower"], VerifyOptions())
    assert exact.metrics == {"em": 1.0, "f1": 1.0}


def test_numeric_tolerance_is_configurable():
    response = think("Therefore, the answer is 101")
    assert rule_score("docmath", response, ["100"]) == 0.0
    assert rule_score("docmath", response, ["100"], VerifyOptions(numeric_rel_tol=0.02)) == 1.0


@pytest.mark.parametrize("verifier,golds", [("numeric", ["about half"]), ("choice", ["Paris"]), ("qa", ["The", "."])])
def test_unusable_golds_raise_whatever_the_prediction(verifier, golds):
    with pytest.raises(GoldError):
        VERIFIERS.get(verifier)("", golds, VerifyOptions())


def test_every_task_names_a_registered_verifier():
    for task in TASKS.names():
        assert TASKS.get(task).verifier in VERIFIERS


def test_parse_choice_letter():
    assert parse_choice_letter("D) the last one") == "D"
    assert parse_choice_letter("d) the last one") is None
    assert parse_choice_letter("(d) the last one") == "D"
    assert parse_choice_letter("A: first") == "A"


def test_model_output_is_never_executed(tmp_path, monkeypatch):
    """Code-shaped answers through every verifier: nothing runs, every score is 0.

    The payloads name their marker by a relative path inside the test's own working directory, so
    the text scored never depends on where pytest puts its temporary folders; digits inside code
    (a path "pytest-0/...") are covered on purpose, against a gold of "0".
    """
    monkeypatch.chdir(tmp_path)
    payloads = ["__import__('os').system('touch pwned')", "exec(\"open('pwned','w')\")",
                "eval(compile('open(\"pwned\",\"w\")','x','exec'))",
                "__import__('os').system('touch pytest-0/run0/pwned')", "open('v0.py','w').write('x=0')"]
    for payload in payloads:
        for task, golds in [("docmath", ["0"]), ("multihop", ["Paris"]), ("choice", ["A"])]:
            assert rule_score(task, think(f"Therefore, the answer is {payload}"), golds) == 0.0, (task, payload)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "v0.py").exists()


# The one import machinery allowed: reward.custom runs the file the config names (the user's own code, as
# verl's custom_reward_function does); no response, gold or data row reaches it.
ALLOWED = {("custom.py", "import importlib.util")}


def test_no_code_evaluation_in_rewards_sources():
    """No path of the reward code evaluates text as code (static check of every module)."""
    source_dir = Path(__file__).resolve().parents[2] / "src" / "longrl" / "rewards"
    forbidden = re.compile(r"(?<![\w.])(eval|exec|compile|__import__)\(|literal_eval\(|sympify\(|"
                           r"\b(import|from) (sympy|pickle|importlib|marshal)\b")
    assert forbidden.search("value = eval(text)") and forbidden.search("import pickle") and not forbidden.search("re.compile(x)")
    offenders = []
    for path in sorted(source_dir.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if forbidden.search(line) and (path.name, line.strip()) not in ALLOWED:
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    assert len(list(source_dir.glob("*.py"))) >= 10


def test_a_list_of_names_holding_the_gold_scores_0():
    """Issue 25, case 6: 381 names with the gold among them scored 1.0 under the strict reward."""
    from longrl.data.synthetic.world import ALL_NAMES

    names = ALL_NAMES[:381]
    gold = names[200]
    for sep in (", ", " or ", "; ", " / ", " and "):
        assert rule_score("multihop", think("Therefore, the answer is " + sep.join(names)), [gold]) == 0.0, sep
    assert rule_score("multihop", think(f"Therefore, the answer is {gold}"), [gold]) == 1.0


def test_function_words_and_separators_name_no_synthetic_name():
    """The synthetic worlds' names are never a function word or a list word, so single answers score as before."""
    from longrl.data.synthetic.world import ALL_NAMES
    from longrl.rewards.text import FUNCTION_WORDS, LIST_SEPARATOR_RE, strict_normalize

    for name in ALL_NAMES:
        assert strict_normalize(name) not in FUNCTION_WORDS and not LIST_SEPARATOR_RE.fullmatch(name), name


def test_synthetic_traces_still_score_1_and_their_hedged_versions_0(tokenizer):
    """The demo's RL reward: every family's single answer (its trace) scores 1.0 as before; the same answer
    listed with a decoy scores 0."""
    from longrl.data.synthetic import synthesize

    samples = synthesize(["docmath", "multihop", "choice", "lookup"], n=24, length=400, seed=5, tokenizer=tokenizer)
    for s in samples:
        assert rule_score(s.task, s.meta["trace"], s.answers) == 1.0, s.meta["trace"]
        answer = s.meta["trace"].split("</think>")[1]
        if s.task in ("multihop", "lookup"):
            hedged = answer.rstrip(".") + " or Zuzu."
            assert rule_score(s.task, "<think>x</think>" + hedged, s.answers) == 0.0, hedged
        elif s.task == "choice":
            other = "A" if s.answers[0] != "A" else "B"
            hedged = answer.rstrip(".") + f" or ({other})."
            assert rule_score(s.task, "<think>x</think>" + hedged, s.answers) == 0.0, hedged
