"""Answer extraction: a table of (response, require_think, prediction, status), each with its reason."""

from __future__ import annotations

import pytest

from longrl.rewards.extract import clean_prediction, extract_prediction, unwrap_command

OK, UNFINISHED, NO_ANSWER = "ok", "unfinished_think", "no_answer"

CASES = [
    # (response, require_think, expected prediction, expected status, reason)
    ("<think>2+2=4</think>Therefore, the answer is 4.", True, "4", OK, "the template sentence, trailing period trimmed"),
    ("<think>a</think>The answer is 4. <think>b</think>The answer is 5.", True, "5", OK, "text after the LAST </think>"),
    ("<think>a</think>the answer is 4 ... so THE ANSWER IS 7", True, "7", OK, "last phrase wins, case-insensitive"),
    ("<think>a</think>Therefore, the correct answer is (B).", True, "B", OK, "'the correct answer is' and parentheses"),
    ("<think>still reasoning about the answer is", True, None, UNFINISHED, "<think> never closed"),
    ("<think>a</think>The answer is 4.<think>more", True, None, UNFINISHED, "a new <think> after the last </think> never closed"),
    ("Therefore, the answer is 4.", True, None, UNFINISHED, "require_think: a missing </think> counts as unfinished"),
    ("Therefore, the answer is 4.", False, "4", OK, "require_think off accepts plain responses"),
    ("<think>x\nTherefore, the answer is 4.", False, None, UNFINISHED, "an open <think> is unfinished even without require_think"),
    ("<think>the answer is 9</think>I could not find it.", True, None, NO_ANSWER, "the phrase inside the thinking does not count"),
    ("<think>a</think>It is 4.", True, None, NO_ANSWER, "no answer phrase: no prediction"),
    ("<think>a</think>Therefore, the answer is .", True, None, NO_ANSWER, "a phrase with nothing after it"),
    ("<think>a</think>Therefore, the answer is **Paris**.", True, "Paris", OK, "bold removed"),
    ("<think>a</think>**Therefore, the answer is** *Paris*", True, "Paris", OK, "emphasis around the phrase and the answer"),
    ("<think>a</think>Therefore, the answer is __Paris__.", True, "Paris", OK, "underscore emphasis removed"),
    ("<think>a</think>Therefore, the answer is net_income.", True, "net_income", OK, "snake_case underscores kept"),
    ('<think>a</think>Therefore, the answer is "Rilu".', True, "Rilu", OK, "surrounding quotes"),
    ("<think>a</think>Therefore, the answer is \u201cRilu\u201d.", True, "Rilu", OK, "curly quotes"),
    ("<think>a</think>Therefore, the answer is $\\boxed{42}$.", True, "42", OK, "LaTeX math and \\boxed{} unwrapped"),
    ("<think>a</think>Therefore, the answer is \\boxed{\\frac{1}{2}}", True, "\\frac{1}{2}", OK, "nested braces in \\boxed{}"),
    ("<think>a</think>Therefore, the answer is: 12.5%", True, "12.5%", OK, "colon after the phrase"),
    ("<think>a</think>Therefore, the answer is:\n\nParis", True, "Paris", OK, "answer on the next line after a colon"),
    ("<think>a</think>Therefore, the answer is Paris.\n\nI hope this helps!", True, "Paris", OK, "the prediction ends at the line end"),
    ("<think>a</think>Therefore, the answer is (a) and (b)", True, "(a) and (b)", OK, "parentheses that do not wrap the whole answer stay"),
    ("<think>a</think>Therefore, the answer is 42.<|im_end|>", True, "42", OK, "a decoded end-of-turn token is dropped"),
    ("<think>a</think>Therefore, the answer is 42<\uff5cend\u2581of\u2581sentence\uff5c>", True, "42", OK, "DeepSeek end token dropped"),
    ("<think>a</think>Therefore, the answer is The.", True, "The", OK, "extraction keeps 'The'; the verifier must not match it"),
    ("<think>a</think>Therefore, the answer is [[YES]]", True, "[[YES]]", OK, "a verdict marker is just text to extraction"),
    ("</think>Therefore, the answer is 3", True, "3", OK, "template put <think> in the prompt: only the close appears"),
    ("<think>a</think>The answer isn't clear", True, None, NO_ANSWER, "'isn't' is not the phrase 'is'"),
    ("<think>a</think>Therefore, the answer is __import__('os').system('id')", True, "import('os').system('id')", OK,
     "code-looking answers are only text (underscores read as emphasis)"),
]


@pytest.mark.parametrize("response,require_think,prediction,status,reason", CASES, ids=[c[-1] for c in CASES])
def test_extraction_table(response, require_think, prediction, status, reason):
    result = extract_prediction(response, require_think=require_think)
    assert (result.prediction, result.status) == (prediction, status), reason


def test_clean_prediction_strips_nested_wrappers():
    assert clean_prediction(' "\\boxed{(B)}". ') == "B"
    assert clean_prediction("((42))") == "42"
    assert clean_prediction("'O'Neil'") == "'O'Neil'"  # odd quote counts: not a wrapper


def test_unwrap_command_leaves_unclosed_braces():
    assert unwrap_command("\\boxed{12", "\\boxed{") == "\\boxed{12"
    assert unwrap_command("a \\text{b} c \\text{d}", "\\text{") == "a b c d"


def test_long_thinking_is_cheap_to_skip():
    response = "<think>" + "the answer is 1. " * 50_000 + "</think>Therefore, the answer is 2."
    assert extract_prediction(response).prediction == "2"
