"""Answer extraction: the final answer a reasoning model states after its thinking.

    extract_prediction("<think>2+2</think>Therefore, the answer is **4**.")
    # Extraction(prediction='4', status='ok')
    extract_prediction("<think>still thinking")           # status='unfinished_think'
    extract_prediction("<think>x</think>It is 4.")        # status='no_answer'

Rules (the published ones, with their known holes closed):
1. The answer part is the text after the last `</think>`. A response that opens `<think>` and never
   closes it (also after the last `</think>`) is `unfinished_think`. With `require_think` (the
   default, for reasoning models) a response without `</think>` counts the same; with it off the
   whole response is the answer part.
2. Markdown emphasis (`*`, `**`, `_x_`, `__x__`) is removed; `snake_case` underscores stay.
3. The prediction follows the last case-insensitive "the answer is" / "the correct answer is"
   (a colon after it is allowed) and runs to the end of that line; no phrase: `no_answer`.
   Departure from the original, which keeps everything after the phrase: a trailing remark on
   later lines ("I hope this helps") would spoil exact match, and a model could append lists of
   candidates below its answer to game containment.
4. It is trimmed of whitespace, trailing periods, surrounding quotes, parentheses and `$...$`,
   and `\\boxed{...}` / `\\text{...}` are unwrapped. Chat special tokens (`<|im_end|>`) are dropped.
   An answer that trims to nothing is `no_answer`.

Nothing here interprets the text: it is sliced and compared, never evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "unfinished_think", "no_answer"]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# "the answer is" / "the correct answer is", any case, not inside a word. Written with a leading
# character class and a look-behind instead of re.IGNORECASE and \b so the engine can skip ahead
# (7x faster on a 40 KB answer part).
_ANSWER_PHRASE_RE = re.compile(r"[Tt](?<![A-Za-z][Tt])(?i:he\s+(?:correct\s+)?answer\s+is)\b[\s:]*")
_UNDERSCORES_RE = re.compile(r"_+")
_SPECIAL_TOKEN_RE = re.compile(r"<\|[^|<>\n]{1,40}\|>|<\uff5c[^\uff5c<>\n]{1,40}\uff5c>")
_WRAPPERS = [('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"), ("`", "`"), ("$", "$"), ("(", ")")]
_LATEX_COMMANDS = ("\\boxed{", "\\text{", "\\textbf{", "\\mathrm{")


@dataclass(frozen=True)
class Extraction:
    prediction: str | None  # the final answer, None when status is not "ok"
    status: Status


def extract_prediction(response: str, require_think: bool = True) -> Extraction:
    """The final answer of `response` and whether one was found.

    Args:
        response: the model's full reply (thinking and answer).
        require_think: a reply without `</think>` has no answer (reasoning models); False
            accepts plain replies.

    Returns:
        Extraction(prediction, status), status one of "ok", "unfinished_think", "no_answer".
    """
    cut = response.rfind(THINK_CLOSE)
    if cut >= 0:
        tail = response[cut + len(THINK_CLOSE):]
    elif THINK_OPEN in response or require_think:
        return Extraction(None, "unfinished_think")
    else:
        tail = response
    if THINK_OPEN in tail:
        return Extraction(None, "unfinished_think")
    tail = remove_emphasis(tail)
    last = None
    for last in _ANSWER_PHRASE_RE.finditer(tail):
        pass
    if last is None:
        return Extraction(None, "no_answer")
    line = tail[last.end():].split("\n", 1)[0]
    prediction = clean_prediction(line)
    if not prediction:
        return Extraction(None, "no_answer")
    return Extraction(prediction, "ok")


def remove_emphasis(text: str) -> str:
    """Drop markdown emphasis: every `*`, and runs of `_` not inside a word (`snake_case` stays)."""
    if "*" in text:
        text = text.replace("*", "")
    if "_" in text:
        text = _UNDERSCORES_RE.sub(_drop_emphasis_underscores, text)
    return text


def _drop_emphasis_underscores(match: re.Match) -> str:
    text, start, end = match.string, match.start(), match.end()
    inside_word = start > 0 and _is_word_char(text[start - 1]) and end < len(text) and _is_word_char(text[end])
    return match.group(0) if inside_word else ""


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def clean_prediction(text: str) -> str:
    """Trim an answer: whitespace, trailing periods, wrapping quotes/parentheses/`$`, LaTeX wrappers.

    Example: ' "\\boxed{(B)}". ' -> 'B'
    """
    text = _SPECIAL_TOKEN_RE.sub("", text)
    for command in _LATEX_COMMANDS:
        text = unwrap_command(text, command)
    previous = None
    while text != previous:
        previous = text
        text = text.strip().rstrip(".").strip()
        for left, right in _WRAPPERS:
            if len(text) >= 2 and text[0] == left and text[-1] == right and _wraps_whole(text, left, right):
                text = text[1:-1]
                break
    return text


def unwrap_command(text: str, command: str) -> str:
    r"""Replace every `\command{body}` by `body` (balanced braces; an unclosed one is left as is)."""
    start = text.find(command)
    while start >= 0:
        body_start = start + len(command)
        end = _closing_brace(text, body_start)
        if end < 0:
            return text
        text = text[:start] + text[body_start:end] + text[end + 1:]
        start = text.find(command, start)
    return text


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _wraps_whole(text: str, left: str, right: str) -> bool:
    """For brackets: the opening one at 0 closes at the end ("(a) and (b)" is not wrapped)."""
    if left == right:
        return text.count(left) == 2
    depth = 0
    for i, ch in enumerate(text):
        if ch == left:
            depth += 1
        elif ch == right:
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
    return False
