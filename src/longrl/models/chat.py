"""What a model's own tokenizer says about its chat turns: the token that ends the assistant's turn.

    end_of_turn_id(tokenizer)          # 2 for SmolLM2 (<|im_end|>), the eos for most templates
    turn_stop_ids(tokenizer, model)    # every id a reply may stop at: end of turn, eos, generation_config eos

Nothing here knows a model family. The end of the assistant's turn is read from the chat template
itself: a two-turn conversation is rendered with a marker as the assistant's reply, and the first
token after the marker is the end-of-turn token when it is one of the tokenizer's special (or added)
tokens (ChatML's `<|im_end|>`, Llama 3's `<|eot_id|>`, DeepSeek's `<｜end▁of▁sentence｜>`). A template
that writes nothing after the reply, or none at all, falls back to the tokenizer's eos.
"""

from __future__ import annotations

MARKER = "\u2063longrl-reply\u2063"   # a reply no template rewrites (invisible separators around a word)


def end_of_turn_id(tokenizer) -> int | None:
    """The id the chat template writes right after an assistant reply, else the tokenizer's eos id (or None)."""
    eos = getattr(tokenizer, "eos_token_id", None)
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "u"}, {"role": "assistant", "content": MARKER}],
                                             tokenize=False)
    except Exception:   # no template, or one that refuses an assistant turn (jinja raises its own types): use the eos
        return eos
    if not isinstance(text, str) or MARKER not in text:
        return eos
    after = text[text.rindex(MARKER) + len(MARKER):]
    ids = tokenizer.encode(after, add_special_tokens=False) if after.strip() else []
    if ids and ids[0] in special_ids(tokenizer):
        return ids[0]
    return eos


def special_ids(tokenizer) -> set[int]:
    """Ids of the tokenizer's special tokens and of its added tokens marked special."""
    ids = set(getattr(tokenizer, "all_special_ids", None) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(i for i, token in decoder.items() if getattr(token, "special", False))
    return ids


def turn_stop_ids(tokenizer, model=None) -> tuple[int, ...]:
    """End-of-turn ids, the one rule for rollouts, evaluation, SFT and `longrl serve`.

    The chat template's end of the assistant turn (`end_of_turn_id`), the tokenizer's eos and the
    model's generation-config eos (an int or a list). Sorted, without duplicates.
    """
    candidates = [end_of_turn_id(tokenizer), getattr(tokenizer, "eos_token_id", None),
                  getattr(getattr(model, "generation_config", None), "eos_token_id", None)]
    ids = set()
    for c in candidates:
        ids.update(i for i in (c if isinstance(c, list | tuple) else [c]) if isinstance(i, int))
    return tuple(sorted(ids))
