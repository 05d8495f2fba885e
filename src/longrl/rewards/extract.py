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
5. An answer line longer than MAX_ANSWER_CHARS (4,000 characters, ~1,000 tokens) is `no_answer`:
   it is an essay or a list of candidates, not a final answer. The phrase is looked for in the
   last ANSWER_WINDOW_CHARS (100,000 characters, ~25K tokens, more than any generation limit of
   the recipe) of the answer part. Both keep the cost of scoring bounded whatever a policy writes.

This is the `strict` protocol's extraction; `published.py` holds the published scripts' own.
Nothing here interprets the text: it is sliced and compared, never evaluated. Every step is
linear in the response length (regular expressions without nested repetition, and bracket pairs
found in one pass), so no response costs more than a few milliseconds per 100 KB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "unfinished_think", "no_answer"]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# "the answer is" / "the correct answer is", any case, not inside a word, then spaces and colons.
# The LAST one is wanted: the pattern is written backwards and run on the reversed text, so the
# first match found is the last phrase, however many come before it.
_PHRASE_REVERSED_RE = re.compile(r"(?<!\w)(?i:si\s+rewsna\s+(?:tcerroc\s+)?eh)[Tt](?![A-Za-z])")
_AFTER_PHRASE_RE = re.compile(r"[\s:]*")
MAX_ANSWER_CHARS = 4000  # a longer answer line is not a final answer (rule 5)
ANSWER_WINDOW_CHARS = 100_000  # the phrase is looked for in this many last characters of the answer part (rule 5)
# A run of "_" is emphasis unless it sits between two ASCII letters/digits (snake_case). Each branch starts with "_" (the engine jumps from one "_" to the next) and matches only at the
# start of a run, the second through a look-ahead and back-reference that never backtracks.
_EMPHASIS_UNDERSCORES_RE = re.compile(r"_(?<![A-Za-z0-9_]_)_*|_(?<!__)(?=(_*))\1(?![A-Za-z0-9_])")
_SPECIAL_TOKEN_RE = re.compile(r"<\|[^|<>\n]{1,40}\|>|<\uff5c[^\uff5c<>\n]{1,40}\uff5c>")
_WRAPPERS = [('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"), ("`", "`"), ("$", "$"), ("(", ")")]
_LATEX_COMMANDS = ("\\boxed{", "\\text{", "\\textbf{", "\\mathrm{")
_BRACKET_CLOSERS = {right: left for left, right in _WRAPPERS if left != right}
_BRACKET_RE = re.compile("[" + re.escape("".join(ch for pair in _BRACKET_CLOSERS.items() for ch in pair)) + "]")
_BRACE_RE = re.compile(r"[{}]")
_WRAPPER_OPENERS = frozenset(left for left, _ in _WRAPPERS)
_WRAPPER_CLOSERS = frozenset(right for _, right in _WRAPPERS)


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
    tail = remove_emphasis(tail[-ANSWER_WINDOW_CHARS:])
    end = find_last_phrase(tail)
    if end is None:
        return Extraction(None, "no_answer")
    line = tail[end:].split("\n", 1)[0]
    if len(line) > MAX_ANSWER_CHARS:
        return Extraction(None, "no_answer")
    prediction = clean_prediction(line)
    if not prediction:
        return Extraction(None, "no_answer")
    return Extraction(prediction, "ok")


def find_last_phrase(text: str) -> int | None:
    """Where the answer starts: the end of the last "the (correct) answer is" and the spaces or colons after it."""
    match = _PHRASE_REVERSED_RE.search(text[::-1])
    if match is None:
        return None
    return _AFTER_PHRASE_RE.match(text, len(text) - match.start()).end()


def remove_emphasis(text: str) -> str:
    """Drop markdown emphasis: every `*`, and runs of `_` not inside a word (`snake_case` stays)."""
    if "*" in text:
        text = text.replace("*", "")
    if "_" in text:
        text = _EMPHASIS_UNDERSCORES_RE.sub("", text)
    return text


def clean_prediction(text: str) -> str:
    """Trim an answer: whitespace, trailing periods, wrapping quotes/parentheses/`$`, LaTeX wrappers.

    Example: ' "\\boxed{(B)}". ' -> 'B'

    Linear in len(text) whatever the nesting: the LaTeX commands are unwrapped in one pass over
    precomputed brace pairs, and the wrappers are peeled by moving two indices inward, with the
    bracket pairs and quote counts known in advance (5,000 nested parentheses: ~2 ms).
    """
    if "<" in text:
        text = _SPECIAL_TOKEN_RE.sub("", text)
    if "\\" in text:
        text = unwrap_commands(text, _LATEX_COMMANDS)
    trimmed = text.strip().rstrip(".").strip()
    if not trimmed or (trimmed[0] not in _WRAPPER_OPENERS and trimmed[-1] not in _WRAPPER_CLOSERS):
        return trimmed  # nothing to peel: the common case, without the bracket analysis
    partner = _bracket_partners(text)
    quote_counts = {left: text.count(left) for left, right in _WRAPPERS if left == right}
    i, j = 0, len(text)

    def drop(position: int) -> None:
        if text[position] in quote_counts:
            quote_counts[text[position]] -= 1

    peeled = True
    while peeled:
        peeled = False
        i, j = _strip_window(text, i, j, drop)
        if j - i < 2:
            break
        first, last = text[i], text[j - 1]
        for left, right in _WRAPPERS:
            if first != left or last != right:
                continue
            whole = quote_counts[left] == 2 if left == right else partner.get(i) == j - 1
            if whole:
                drop(i)
                drop(j - 1)
                i, j, peeled = i + 1, j - 1, True
                break
    return text[i:j]


def _strip_window(text: str, i: int, j: int, drop) -> tuple[int, int]:
    """`strip()`, `rstrip(".")`, `strip()` on text[i:j], as indices (drop() sees each removed position)."""
    while i < j and text[i].isspace():
        drop(i)
        i += 1
    while j > i and (text[j - 1].isspace() or text[j - 1] == "."):
        j -= 1
        drop(j)
    return i, j


def _bracket_partners(text: str) -> dict[int, int]:
    """Position of each opening bracket of _WRAPPERS -> position of its closing partner (matched ones only)."""
    stacks: dict[str, list[int]] = {left: [] for left in _BRACKET_CLOSERS.values()}
    partner: dict[int, int] = {}
    for match in _BRACKET_RE.finditer(text):  # visits only the brackets: a C-speed scan over the rest
        ch, position = match.group(), match.start()
        if ch in stacks:
            stacks[ch].append(position)
        else:
            stack = stacks[_BRACKET_CLOSERS[ch]]
            if stack:
                partner[stack.pop()] = position
    return partner


def unwrap_command(text: str, command: str) -> str:
    r"""Replace every `\command{body}` by `body` (balanced braces; an unclosed one is left as is)."""
    return unwrap_commands(text, (command,))


def unwrap_commands(text: str, commands: tuple[str, ...]) -> str:
    r"""Replace every `\command{body}` of any of `commands` (each ending in "{") by `body`, in one pass.

    Occurrences are those of the original text; a command whose brace never closes is left as is.
    """
    starts = []
    for command in commands:
        at = text.find(command)
        while at >= 0:
            starts.append((at, len(command)))
            at = text.find(command, at + len(command))
    if not starts:
        return text
    closing = _brace_partners(text)
    removed: list[tuple[int, int]] = []  # [from, to) spans to delete
    for at, length in starts:
        end = closing.get(at + length - 1)
        if end is not None:
            removed.append((at, at + length))
            removed.append((end, end + 1))
    removed.sort()
    pieces, position = [], 0
    for begin, stop in removed:
        if begin >= position:
            pieces.append(text[position:begin])
            position = stop
    pieces.append(text[position:])
    return "".join(pieces)


def _brace_partners(text: str) -> dict[int, int]:
    """Position of each "{" -> position of the "}" closing it (matched ones only)."""
    stack: list[int] = []
    partner: dict[int, int] = {}
    for match in _BRACE_RE.finditer(text):
        if match.group() == "{":
            stack.append(match.start())
        elif stack:
            partner[stack.pop()] = match.start()
    return partner
