"""The QwenLong-L1 prompt, applied through the tokenizer's chat template, with middle truncation.

One user turn, no system prompt:

    Please read the following text and answer the question below.

    <text>
    {document}
    </text>

    {question}

    Format your response as follows: "Therefore, the answer is (insert answer here)".

Multiple-choice tasks list the options under the question and ask for
"The correct answer is (insert answer here)". When a token budget is given, the document
loses its middle (the first and last halves of the budget are kept), so the whole chat
prompt fits.
"""

from __future__ import annotations

from dataclasses import dataclass

from longrl.data.schema import LETTERS, Sample
from longrl.data.tasks import TASKS

TEMPLATE = (
    "Please read the following text and answer the question below.\n\n"
    "<text>\n{document}\n</text>\n\n"
    "{question}\n\n"
    'Format your response as follows: "{answer_format}".'
)
QA_FORMAT = "Therefore, the answer is (insert answer here)"
CHOICE_FORMAT = "The correct answer is (insert answer here)"


def question_text(sample: Sample) -> str:
    if not sample.choices:
        return sample.question
    options = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(sample.choices))
    return f"{sample.question}\n\n{options}"


def user_message(sample: Sample, document: str | None = None) -> str:
    """The user turn for `sample` (with `document` in place of its context when given)."""
    multiple_choice = TASKS.get(sample.task).multiple_choice if sample.task in TASKS else bool(sample.choices)
    return TEMPLATE.format(
        document=sample.context if document is None else document,
        question=question_text(sample),
        answer_format=CHOICE_FORMAT if multiple_choice else QA_FORMAT,
    )


def render_chat(tokenizer, user: str) -> str:
    """The chat-formatted prompt text, ending where the assistant's reply starts."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )


def truncate_middle(ids: list[int], budget: int) -> list[int]:
    """Keep the first ceil(budget/2) and the last floor(budget/2) ids."""
    if budget <= 0:
        return []
    if len(ids) <= budget:
        return list(ids)
    head = (budget + 1) // 2
    tail = budget - head
    return list(ids[:head]) + (list(ids[-tail:]) if tail else [])


@dataclass(frozen=True)
class EncodedPrompt:
    text: str              # the chat prompt as sent to a model
    ids: list[int]         # its token ids (no special tokens added beyond the chat template's)
    truncated_tokens: int  # document tokens removed from the middle (0 = untouched)


def encode_prompt(tokenizer, sample: Sample, max_input_tokens: int | None = None) -> EncodedPrompt:
    """Render, tokenize and (when over `max_input_tokens`) middle-truncate the document."""
    text = render_chat(tokenizer, user_message(sample))
    ids = tokenizer.encode(text, add_special_tokens=False)
    if max_input_tokens is None or len(ids) <= max_input_tokens:
        return EncodedPrompt(text, ids, 0)
    overhead = len(tokenizer.encode(render_chat(tokenizer, user_message(sample, "")), add_special_tokens=False))
    doc_ids = tokenizer.encode(sample.context, add_special_tokens=False)
    budget = max_input_tokens - overhead
    if budget < 2:
        raise ValueError(f"max_input_tokens={max_input_tokens} leaves no room for the document (template alone: {overhead} tokens)")
    # Token boundaries can merge differently where the cut document meets the template; shrink until it fits.
    for margin in range(0, 64, 2):
        kept = truncate_middle(doc_ids, budget - margin)
        text = render_chat(tokenizer, user_message(sample, tokenizer.decode(kept)))
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= max_input_tokens:
            return EncodedPrompt(text, ids, len(doc_ids) - len(kept))
    raise ValueError(f"could not fit sample {sample.id!r} into {max_input_tokens} tokens")
