"""Evaluation prompts: the published template, counted and middle-truncated in one tokenizer pass.

    prompt = prepare_prompt(tokenizer, sample, max_input_tokens=120_000)
    prompt.text, prompt.user, prompt.ids, prompt.tokens, prompt.truncated_tokens
    prompt = prepare_prompt(tokenizer, sample, 120_000, protocol="published")   # as the published scripts cut

Two protocols (`eval.protocol`). `published` cuts as the published scripts do: the user message
(template, document and question) is tokenized, and over budget its first max//2 and last
max - max//2 tokens are kept (the template's head and the question end are cut into like the
document when the budget is small), decoded without special tokens, then wrapped in the chat
template. `strict` (below) cuts the document only.

Strict:
Same prompt and same truncation rule as `longrl.data.prompt.encode_prompt` (the document loses
its middle: its first ceil(D/2) and last floor(D/2) tokens are kept, where D is what the budget
leaves after the template, so the template, the question and the answer instruction are never
cut), but built for 120K-token documents: the template is rendered once around a placeholder and
the prompt is tokenized once, without offsets. Over budget, the document's tokens are found from
the template's, and the two kept runs are decoded back (checked to be exactly the start and end
of the prompt; if not, e.g. for text the normaliser changes, a second pass with character offsets
slices the original). Kept ids are exactly the document's first and last token runs, so
`len(ids) == max_input_tokens` after a cut. A server re-tokenizes the cut text;
where the two halves meet it may merge a token or two differently (the published scripts have
the same property).
"""

from __future__ import annotations

from dataclasses import dataclass

from longrl.data.prompt import encode_prompt, render_chat, user_message
from longrl.data.schema import Sample
from longrl.errors import UserError

PLACEHOLDER = "\ue000longrl-document\ue000"  # private-use characters: never in a real document


@dataclass(frozen=True)
class EvalPrompt:
    text: str                  # the chat-formatted prompt (local model, /completions)
    user: str                  # the user turn alone (/chat/completions: the server applies its template)
    ids: list[int] | None      # token ids of `text` (None when not asked for)
    tokens: int                # prompt length in tokens
    truncated_tokens: int      # document tokens removed from the middle (0 = untouched)


def template_parts(tokenizer, sample: Sample) -> tuple[str, str, str, str]:
    """(chat text before the document, chat text after it, user turn before it, user turn after it)."""
    user = user_message(sample, PLACEHOLDER)
    chat = render_chat(tokenizer, user)
    if user.count(PLACEHOLDER) != 1 or chat.count(PLACEHOLDER) != 1:
        raise ValueError(f"the chat template does not place the document of {sample.id!r} exactly once")
    before, after = chat.split(PLACEHOLDER)
    user_before, user_after = user.split(PLACEHOLDER)
    return before, after, user_before, user_after


def prepare_prompt(tokenizer, sample: Sample, max_input_tokens: int | None, with_ids: bool = True,
                   protocol: str = "strict") -> EvalPrompt:
    """Render, count and (over `max_input_tokens`) middle-truncate the prompt of `sample`.

    Args:
        tokenizer: a transformers tokenizer with a chat template (fast tokenizers take the one-pass path).
        sample: the item; its context is the document.
        max_input_tokens: prompt budget in tokens; None = never truncate.
        with_ids: also return the token ids (a local model needs them; a server does not).
        protocol: "strict" (the document is cut, the chat prompt fits the budget) or "published"
            (the user message is cut to the budget, as the published scripts do).
    Returns:
        EvalPrompt; strict: after a cut, tokens == max_input_tokens and ids == prompt ids up to the
        document's first half + the document's last half onward.
    """
    if protocol == "published":
        return published_prompt(tokenizer, sample, max_input_tokens, with_ids)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return _slow_path(tokenizer, sample, max_input_tokens)
    before, after, user_before, user_after = template_parts(tokenizer, sample)
    document = sample.context
    text = before + document + after
    # The batch entry points release the GIL: prompts prepared in worker threads overlap.
    ids = backend.encode_batch_fast([text], add_special_tokens=False)[0].ids
    if max_input_tokens is None or len(ids) <= max_input_tokens:
        return EvalPrompt(text, user_before + document + user_after, ids if with_ids else None, len(ids), 0)
    cut = _cut_by_decoding(backend, ids, text, before, after, max_input_tokens, sample.id)
    if cut is None:  # the text does not decode back exactly (normalisation, partial characters): use offsets
        cut = _cut_by_offsets(backend, text, before, after, max_input_tokens, sample.id)
    kept, out_ids, removed = cut
    return EvalPrompt(before + kept + after, user_before + kept + user_after, out_ids if with_ids else None,
                      len(out_ids), removed)


def _cut_points(total: int, first: int, end: int, max_input_tokens: int, sample_id: str) -> tuple[int, int]:
    """Removed token range [cut_from, cut_to) for document tokens [first, end) of a `total`-token prompt."""
    overhead = total - (end - first)
    budget = max_input_tokens - overhead
    if budget < 2:
        raise UserError(f"max_input_tokens={max_input_tokens} leaves no room for the document of {sample_id!r} "
                        f"(template and question alone: {overhead} tokens); raise eval.max_input_tokens")
    head = (budget + 1) // 2
    return first + head, end - (budget - head)


def _cut_by_decoding(backend, ids: list[int], text: str, before: str, after: str, max_input_tokens: int,
                     sample_id: str) -> tuple[str, list[int], int] | None:
    """Find the document's tokens from the template's, cut, and decode the two kept runs (no second
    encoding pass). None when the decoded runs are not exactly the start and end of `text`."""
    n = len(ids)

    def decoded(part: list[int]) -> str:
        return backend.decode(part, skip_special_tokens=False)

    lead = backend.encode_batch_fast([before], add_special_tokens=False)[0].ids
    first = _common_prefix(ids, lead)
    while first < n and len(decoded(ids[:first])) < len(before):  # a token merging template and document counts as template
        first += 1
    trail = backend.encode_batch_fast([after], add_special_tokens=False)[0].ids
    last = _common_prefix(ids[::-1], trail[::-1])
    while last < n and len(decoded(ids[n - last:])) < len(after):
        last += 1
    if n - last <= first:
        return None
    cut_from, cut_to = _cut_points(n, first, n - last, max_input_tokens, sample_id)
    head, tail = decoded(ids[:cut_from]), decoded(ids[cut_to:])
    if not (len(head) >= len(before) and len(tail) >= len(after) and text.startswith(head) and text.endswith(tail)):
        return None
    kept = head[len(before):] + tail[: len(tail) - len(after)]
    return kept, ids[:cut_from] + ids[cut_to:], cut_to - cut_from


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _cut_by_offsets(backend, text: str, before: str, after: str, max_input_tokens: int,
                    sample_id: str) -> tuple[str, list[int], int]:
    """The cut from a second encoding with character offsets: slices the original text."""
    encoding = backend.encode_batch([text], add_special_tokens=False)[0]
    start, stop = len(before), len(text) - len(after)
    span = document_token_span(encoding, start, stop)
    if span is None:
        raise UserError(f"cannot locate the document of {sample_id!r} in its tokens to truncate it")
    cut_from, cut_to = _cut_points(len(encoding), *span, max_input_tokens, sample_id)
    char_from = encoding.token_to_chars(cut_from - 1)[1]
    char_to = encoding.token_to_chars(cut_to)[0]
    kept = text[start:char_from] + text[char_to:stop]
    ids = encoding.ids
    return kept, ids[:cut_from] + ids[cut_to:], cut_to - cut_from


def document_token_span(encoding, start: int, stop: int) -> tuple[int, int] | None:
    """Token range [first, end) lying wholly inside characters [start, stop); tokens straddling an edge
    (a merge of the document's edge with the template) count as template. None if unmappable."""
    first_tok = encoding.char_to_token(start)
    last_tok = encoding.char_to_token(stop - 1)
    if first_tok is None or last_tok is None:
        return None
    first = first_tok if encoding.token_to_chars(first_tok)[0] >= start else first_tok + 1
    end = last_tok + 1 if encoding.token_to_chars(last_tok)[1] <= stop else last_tok
    return (first, end) if end > first else None


def published_prompt(tokenizer, sample: Sample, max_input_tokens: int | None, with_ids: bool = True) -> EvalPrompt:
    """The published cut: the user message's first max//2 and last max - max//2 tokens, decoded.

    `tokens` counts the chat prompt (with ids: exactly; without: the user message's tokens plus
    the chat template's own). `truncated_tokens` counts the user-message tokens removed.
    """
    user = user_message(sample)
    ids = tokenizer.encode(user)
    removed = 0
    if max_input_tokens is not None and len(ids) > max_input_tokens:
        head = max_input_tokens // 2
        kept = ids[:head] + ids[len(ids) - (max_input_tokens - head):]
        removed = len(ids) - len(kept)
        user = tokenizer.decode(kept, skip_special_tokens=True)
        ids = kept
    text = render_chat(tokenizer, user)
    if with_ids:
        chat_ids = tokenizer.encode(text, add_special_tokens=False)
        return EvalPrompt(text, user, chat_ids, len(chat_ids), removed)
    template_tokens = len(tokenizer.encode(render_chat(tokenizer, ""), add_special_tokens=False))
    return EvalPrompt(text, user, None, len(ids) + template_tokens, removed)


def _slow_path(tokenizer, sample: Sample, max_input_tokens: int | None) -> EvalPrompt:
    """Tokenizers without offsets: `encode_prompt`, which re-encodes until the cut prompt fits."""
    try:
        encoded = encode_prompt(tokenizer, sample, max_input_tokens)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    document = sample.context
    if encoded.truncated_tokens:
        before, after, user_before, user_after = template_parts(tokenizer, sample)
        document = encoded.text[len(before): len(encoded.text) - len(after)]
        return EvalPrompt(encoded.text, user_before + document + user_after, encoded.ids, len(encoded.ids), encoded.truncated_tokens)
    return EvalPrompt(encoded.text, user_message(sample), encoded.ids, len(encoded.ids), 0)
