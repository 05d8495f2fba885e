"""Exact, memoised token ids for texts assembled from a small stock of pieces (the synthetic documents).

    fast = PieceTokenizer(tokenizer)            # any Hugging Face tokenizer
    fast.encode("The mentor of Gire is Tamo.")  # == tokenizer.encode(text, add_special_tokens=False)
    fast.count(" Sabi wrote a letter.")          # len of the above, memoised per text
    fast.estimate(" Sabi wrote a letter.")       # the sum of its space-separated words' counts (memoised)
    encode_example(fast, sample)                 # stands in for the tokenizer: everything else is delegated

A fast tokenizer first cuts a text at its added tokens (`<|im_start|>`, `<think>`), normalises
each remaining part and splits it into pre-tokens with its split pattern (Qwen2's: a word with
its leading space, one digit, a run of punctuation), maps their bytes to the byte-level alphabet
and runs BPE inside each pre-token alone. Synthetic documents repeat the same few thousand
pre-tokens, so `encode` memoises BPE per pre-token and cuts plain ASCII text with the same
pattern, rewritten for ASCII (\\p{L} -> A-Za-z, \\p{N} -> 0-9) and run by `re` (normalisation leaves
ASCII unchanged): the ids are the tokenizer's by
construction, ~3x faster than `tokenizer.encode` on long texts and far faster on short texts
(`count` memoises them). A document is filled sentence by sentence with `estimate`, the sum of
memoised counts of its space-separated words: exact for split-pattern tokenizers (a space starts a
pre-token), close for others; the generator then counts the whole prompt exactly. Non-ASCII parts go through
the tokenizer's own normaliser and pre-tokenizer.

Tokenizers of another make (a pre-tokenizer that is not split-pattern + byte-level, a normaliser
that changes ASCII, added tokens that strip whitespace or match inside words, or no
`tokenizers.Tokenizer` behind them) go through their own `encode` unchanged (correct, not faster).
"""

from __future__ import annotations

import functools
import json
import re
from itertools import chain

UNUSUAL_ASCII = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")   # control characters whose \s-ness differs between regex engines

MAX_MEMO = 200_000  # memoised pre-tokens and estimates (each memo is cleared when full: memory stays bounded)
SHORT_TEXT = 256    # `estimate` memoises texts up to this many characters; `encode` keeps the last longer one


class PieceTokenizer:
    """`encode`/`count` equal to `tokenizer.encode(text, add_special_tokens=False)`, memoised by piece."""

    def __init__(self, tokenizer, memoise: bool = True):
        self.tokenizer = tokenizer
        self.memoise = memoise                           # False: every call goes to `tokenizer.encode` (the baseline)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        added = list(getattr(tokenizer, "added_tokens_decoder", {}).values())
        plain = all(not (t.lstrip or t.rstrip or t.single_word or t.normalized) for t in added)
        self._pattern = split_pattern(backend) if backend is not None and plain else None
        self._backend = backend if self._pattern is not None else None
        self._added = {t.content: tokenizer.convert_tokens_to_ids(t.content) for t in added}
        contents = sorted(self._added, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(map(re.escape, contents)) + ")") if contents else None
        self._pieces: dict[str, list[int]] = {}
        self._spaced: dict[str, int] = {}                # word -> tokens of " " + word (a bounded vocabulary: not cleared)
        self._estimates: dict[str, int] = {}
        self._last: tuple[str, list[int]] = ("", [])   # the last long text encoded (a prompt is counted, then encoded)
        self._frames: dict[bool, tuple[str, str] | None] = {}   # add_generation_prompt -> the frame of one user turn

    def __getattr__(self, name: str):
        """Everything but encoding is the wrapped tokenizer's (chat template, eos/pad ids, decode)."""
        return getattr(self.__dict__["tokenizer"], name)

    @property
    def exact_fast_path(self) -> bool:
        """True when `encode` memoises pre-tokens; False when it defers to the tokenizer's own `encode`."""
        return self._backend is not None and self.memoise

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text` without special tokens added (the chat template's own markers are kept)."""
        if self._backend is None or add_special_tokens or not self.memoise:
            return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)
        if len(text) > SHORT_TEXT and self._last[0] == text:
            return list(self._last[1])
        ids: list[int] = []
        parts = self._split.split(text) if self._split else [text]
        for i, part in enumerate(parts):
            if i % 2:                                    # an added token (the split keeps them at odd indices)
                ids.append(self._added[part])
            elif part:
                ids.extend(self._encode_plain(part))
        if len(text) > SHORT_TEXT:
            self._last = (text, list(ids))
        return ids

    def count(self, text: str) -> int:
        """len(encode(text)) (its pre-tokens are memoised by `encode`)."""
        return len(self.encode(text))

    def estimate(self, text: str) -> int:
        """Tokens of `text` as the sum over its space-separated words (" " + word each); memoised per word."""
        if not self.memoise:
            return self.count(text)
        known = self._estimates.get(text)
        if known is not None:
            return known
        first, *rest = text.split(" ")
        counts = list(map(self._spaced.get, rest))
        if None in counts:
            for k, word in enumerate(rest):
                if counts[k] is None:
                    counts[k] = self._spaced[word] = len(self.encode(" " + word))
        total = sum(counts) + (self.count(first) if first else 0)
        if len(text) <= SHORT_TEXT:
            if len(self._estimates) >= MAX_MEMO:
                self._estimates.clear()
            self._estimates[text] = total
        return total

    def apply_chat_template(self, conversation, **kwargs):
        """The wrapped tokenizer's; a lone user turn rendered as text is framed from one cached rendering."""
        single_user = (isinstance(conversation, list) and len(conversation) == 1 and conversation[0].get("role") == "user"
                       and set(conversation[0]) == {"role", "content"} and isinstance(conversation[0]["content"], str))
        if self.memoise and single_user and kwargs.get("tokenize") is False and set(kwargs) <= {"tokenize", "add_generation_prompt"}:
            frame = self._chat_frame(bool(kwargs.get("add_generation_prompt")))
            if frame is not None:
                return frame[0] + conversation[0]["content"] + frame[1]
        return self.tokenizer.apply_chat_template(conversation, **kwargs)

    def _chat_frame(self, add_generation_prompt: bool) -> tuple[str, str] | None:
        """(head, tail) such that a user turn renders as head + content + tail, or None if the template is not so."""
        if add_generation_prompt not in self._frames:
            frames = []
            for probe in ("\x00a\x00", " \x00b\x00\n"):     # two contents, one with edge whitespace
                text = self.tokenizer.apply_chat_template([{"role": "user", "content": probe}], tokenize=False,
                                                          add_generation_prompt=add_generation_prompt)
                frames.append(tuple(text.split(probe)) if text.count(probe) == 1 else None)
            self._frames[add_generation_prompt] = frames[0] if frames[0] is not None and frames[0] == frames[1] else None
        return self._frames[add_generation_prompt]

    def _encode_plain(self, text: str) -> list[int]:
        backend = self._backend
        if text.isascii() and not UNUSUAL_ASCII.search(text):
            pieces = self._pattern.findall(text)
            found = list(map(self._pieces.get, pieces))
            if None in found:
                if len(self._pieces) >= MAX_MEMO:
                    self._pieces.clear()
                for k, piece in enumerate(pieces):
                    if found[k] is None:         # memo keys are raw ASCII pieces, BPE runs on their byte-level form
                        found[k] = self._pieces[piece] = [t.id for t in backend.model.tokenize(piece.translate(BYTE_LEVEL_ASCII))]
            return list(chain.from_iterable(found))
        if backend.normalizer is not None:
            text = backend.normalizer.normalize_str(text)
        return [t.id for piece, _ in backend.pre_tokenizer.pre_tokenize_str(text) for t in backend.model.tokenize(piece)]


def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character map that byte-level BPE vocabularies are written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


BYTE_LEVEL_ASCII = {b: c for b, c in byte_level_alphabet().items() if b < 128}  # str.translate table for ASCII text
IDENTITY_ON_ASCII = {None, "NFC", "NFD", "NFKC", "NFKD"}                   # normalisers that leave ASCII as it is


def ascii_pattern(pattern: str) -> str:
    """`pattern` for ASCII text in `re` syntax: \\p{L} -> A-Za-z, \\p{N} -> 0-9 (inside or outside a class).

    Example: r"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+" -> r"[^\\r\\nA-Za-z0-9]?[A-Za-z]+".
    """
    classes = {"\\p{L}": "A-Za-z", "\\p{N}": "0-9"}
    out, depth, i = [], 0, 0
    while i < len(pattern):
        piece = pattern[i:i + 5]
        if piece in classes:
            out.append(classes[piece] if depth else f"[{classes[piece]}]")
            i += 5
            continue
        if pattern[i] == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        depth += {"[": 1, "]": -1}.get(pattern[i], 0)
        out.append(pattern[i])
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=8)
def _compile(pattern: str):
    rewritten = ascii_pattern(pattern)
    if "\\p{" in rewritten:                     # a Unicode class this rewrite does not know
        return None
    try:
        return re.compile(rewritten)
    except re.error:
        return None


def split_pattern(backend):
    """The compiled split pattern of a `Split(pattern) + ByteLevel` pre-tokenizer; None for any other make."""
    spec = json.loads(backend.to_str())
    normalizer = spec.get("normalizer")
    if (normalizer or {}).get("type") not in IDENTITY_ON_ASCII:
        return None
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if len(steps) != 2:
        return None
    split, level = steps
    if (split.get("type") != "Split" or split.get("behavior") != "Isolated" or split.get("invert")
            or "Regex" not in split.get("pattern", {}) or level.get("type") != "ByteLevel"
            or level.get("use_regex") or level.get("add_prefix_space")):
        return None
    return _compile(split["pattern"]["Regex"])
