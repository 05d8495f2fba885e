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


# ---- the linear-time trimming against the naive definitions it replaces -----------------------------

def naive_remove_emphasis(text: str) -> str:
    out, i = [], 0
    text = text.replace("*", "")
    while i < len(text):
        if text[i] != "_":
            out.append(text[i])
            i += 1
            continue
        end = i
        while end < len(text) and text[end] == "_":
            end += 1
        word = lambda ch: ch.isascii() and ch.isalnum()  # noqa: E731
        if i > 0 and word(text[i - 1]) and end < len(text) and word(text[end]):
            out.append(text[i:end])
        i = end
    return "".join(out)


def naive_unwrap(text: str, command: str) -> str:
    start = text.find(command)
    while start >= 0:
        depth, end = 1, -1
        for k in range(start + len(command), len(text)):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                end = k
                break
        if end < 0:
            return text
        text = text[:start] + text[start + len(command):end] + text[end + 1:]
        start = text.find(command, start)
    return text


def naive_clean(text: str) -> str:
    from longrl.rewards.extract import _LATEX_COMMANDS, _SPECIAL_TOKEN_RE, _WRAPPERS

    def wraps_whole(t, left, right):
        if left == right:
            return t.count(left) == 2
        depth = 0
        for k, ch in enumerate(t):
            depth += 1 if ch == left else -1 if ch == right else 0
            if depth == 0 and ch == right:
                return k == len(t) - 1
        return False

    text = _SPECIAL_TOKEN_RE.sub("", text)
    for command in _LATEX_COMMANDS:
        text = naive_unwrap(text, command)
    previous = None
    while text != previous:
        previous = text
        text = text.strip().rstrip(".").strip()
        for left, right in _WRAPPERS:
            if len(text) >= 2 and text[0] == left and text[-1] == right and wraps_whole(text, left, right):
                text = text[1:-1]
                break
    return text


def test_trimming_matches_the_naive_definitions_on_random_text():
    import random

    from longrl.rewards.extract import remove_emphasis

    rng = random.Random(0)
    alphabet = ["a", "7", "_", "*", " ", ".", "(", ")", '"', "'", "$", "\u201c", "\u201d", "{", "}", "\\boxed{", "\\text{"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        assert remove_emphasis(text) == naive_remove_emphasis(text), repr(text)
        if text.count("\\") <= 1:  # several commands: the one-pass unwrap reads the original text's occurrences
            assert clean_prediction(text) == naive_clean(text), repr(text)


def test_answer_line_longer_than_the_limit_is_no_answer():
    from longrl.rewards.extract import MAX_ANSWER_CHARS

    fits = "<think>a</think>Therefore, the answer is " + "x" * MAX_ANSWER_CHARS
    assert extract_prediction(fits).status == OK
    assert extract_prediction(fits + "x") == extract_prediction("<think>a</think>It is.")  # (None, no_answer)


def test_last_phrase_found_backwards_is_the_last_forward_match():
    import random
    import re

    from longrl.rewards.extract import find_last_phrase

    forward = re.compile(r"[Tt](?<![A-Za-z][Tt])(?i:he\s+(?:correct\s+)?answer\s+is)\b[\s:]*")
    rng = random.Random(1)
    pieces = ["the answer is", "The Correct answer is", "THE ANSWER IS", "the  answer\nis", "atthe answer is",
              "the answer isn't", " ", ":", "x", "7", "\n", "the answer is:", "tthe answer is"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
        last = None
        for last in forward.finditer(text):
            pass
        assert find_last_phrase(text) == (None if last is None else last.end()), repr(text)
