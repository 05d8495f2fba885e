"""The OpenAI-compatible request and reply formats of `longrl serve`: parse and check, then build.

    job = parse_completion(body, served)      # -> Job (prompt ids, n, SamplingParams, seeds); RequestError if bad
    payload = completion_reply(job, groups, served, version)

Requests follow vLLM's and SGLang's `/v1/completions` and `/v1/chat/completions`: a prompt as text or
token ids (one or several), `n`, `max_tokens` (`max_completion_tokens` for chat), `temperature`,
`top_p`, `top_k` (<= 0: off), `seed`, `stop_token_ids`, `ignore_eos`, `return_token_ids`,
`skip_special_tokens`, and on `/completions` `logprobs: 0`: each choice then carries
`logprobs.token_logprobs`, the log-prob of every sampled token under the distribution it was
sampled from (after temperature, top-k and top-p, renormalised; vLLM's `--logprobs-mode
processed_logprobs`), and `logprobs.tokens`. Fields longrl does not implement and that would change
the result (`stream`, `echo`, top-N alternatives (`logprobs` > 0, chat `logprobs`), stop strings,
`logit_bias`, penalties) are refused with HTTP 400 rather than
ignored; other unknown fields are ignored, as SGLang does. Replies carry `choices[].token_ids` and
`prompt_token_ids` when `return_token_ids` is set, the stop token that ended a choice
(`matched_stop`, SGLang's name, and `stop_reason`, vLLM's), usage counts, and
`metadata.weight_version`: the weights that produced them.

Work cap: a request may ask for at most `Served.max_request_tokens` tokens of work, counted as the
sum over its prompts of n x (prompt tokens + max_tokens) (the K,V positions its samples may hold,
the shared prompt counted per sample); past it the request is refused with HTTP 400 before any
work starts (default: `serve/limits.py`).
"""

from __future__ import annotations

import math
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from longrl.engine.generate import GroupRollout, SamplingParams, group_seed
from longrl.serve.limits import MAX_REQUEST_TOKENS

MAX_N = 256                # samples per request
COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /completions
# Fields that would change the result and are not implemented: refused (value -> is it in use?).
UNSUPPORTED = {
    "stream": bool, "echo": bool, "logprobs": lambda v: v is not None and v is not False,
    "top_logprobs": lambda v: v is not None, "stop": lambda v: bool(v), "logit_bias": lambda v: bool(v),
    "presence_penalty": lambda v: bool(v), "frequency_penalty": lambda v: bool(v),
    "repetition_penalty": lambda v: v not in (None, 1, 1.0), "min_tokens": lambda v: bool(v),
    "best_of": lambda v: v not in (None, 1), "suffix": lambda v: bool(v), "tools": lambda v: bool(v),
    "response_format": lambda v: v not in (None, {"type": "text"}),
}


class RequestError(Exception):
    """A request the server will not run: HTTP `status` and a message for the client."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message
        super().__init__(message)


@dataclass(frozen=True)
class Served:
    """What requests are checked against: the served model's name, tokenizer, vocabulary and window."""

    name: str
    tokenizer: Any
    stops: tuple[int, ...]       # the model's end-of-turn ids (longrl's stop rule)
    vocab_size: int
    context: int                 # max positions: prompt + completion must fit
    max_request_tokens: int = MAX_REQUEST_TOKENS   # the work cap (module docstring)


@dataclass(frozen=True)
class Job:
    """One request, resolved: P prompts, n samples each."""

    prompts: list[list[int]]
    n: int
    params: SamplingParams
    seeds: list[int]             # one per prompt
    return_token_ids: bool
    skip_special_tokens: bool
    chat: bool
    logprobs: bool = False       # /completions `logprobs: 0`: report the sampled tokens' log-probs

    @property
    def key(self) -> tuple:
        """Jobs with equal keys can be decoded in one batch."""
        return self.n, self.params


def _int(body: dict, name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")
        raise RequestError(400, f"`{name}` must be {bound}, got {value!r}")
    return value


def _float(body: dict, name: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value = body.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value > high or value < low or (low_open and value == low):
        raise RequestError(400, f"`{name}` must be a number in {'(' if low_open else '['}{low:g}, {high:g}], got {value!r}")
    return float(value)


def _ids(value: Any, vocab: int, what: str) -> list[int]:
    if not value or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        raise RequestError(400, f"{what} must be a non-empty list of token ids")
    bad = [t for t in value if not 0 <= t < vocab]
    if bad:
        raise RequestError(400, f"{what}: token id {bad[0]} is outside the vocabulary (0..{vocab - 1})")
    return list(value)


def check_model(body: dict, served: Served) -> None:
    model = body.get("model")
    if model is not None and model != served.name:
        raise RequestError(404, f"model {model!r} is not served here; this server serves {served.name!r}")


def _check_unsupported(body: dict, allowed: tuple[str, ...] = ()) -> None:
    for name, in_use in UNSUPPORTED.items():
        if name in body and name not in allowed and in_use(body[name]):
            raise RequestError(400, f"`{name}` is not supported by longrl serve")


def _sampling(body: dict, served: Served, prompts: list[list[int]], default_max_tokens: int,
              max_tokens_names: tuple[str, ...]) -> tuple[int, SamplingParams, list[int]]:
    """n, SamplingParams and per-prompt seeds from the request's fields."""
    n = _int(body, "n", 1, 1, MAX_N)
    max_tokens = None
    for name in max_tokens_names:
        max_tokens = _int(body, name, None, 1)
        if max_tokens is not None:
            break
    longest = max(len(p) for p in prompts)
    room = served.context - longest
    if room < 1:
        raise RequestError(400, f"the prompt has {longest} tokens; the model's context window is {served.context}")
    if max_tokens is None:
        max_tokens = min(default_max_tokens, room)
    elif max_tokens > room:
        raise RequestError(400, f"the prompt ({longest} tokens) plus max_tokens ({max_tokens}) exceed the model's "
                                f"context window ({served.context})")
    temperature = _float(body, "temperature", 1.0, 0.0, 100.0)
    top_p = _float(body, "top_p", 1.0, 0.0, 1.0, low_open=True)
    top_k = body.get("top_k", 0)
    if top_k is None or (isinstance(top_k, int) and not isinstance(top_k, bool) and top_k <= 0):
        top_k = 0
    elif isinstance(top_k, bool) or not isinstance(top_k, int):
        raise RequestError(400, f"`top_k` must be an integer, got {top_k!r}")
    extra = body.get("stop_token_ids") or []
    if not isinstance(extra, list):
        raise RequestError(400, "`stop_token_ids` must be a list of token ids")
    extra = _ids(extra, served.vocab_size, "`stop_token_ids`") if extra else []
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise RequestError(400, "`ignore_eos` must be true or false")
    stops = tuple(sorted(set(extra) | (set() if ignore_eos else set(served.stops))))
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not -2**63 <= seed < 2**63):
        raise RequestError(400, f"`seed` must be a 64-bit integer, got {seed!r}")
    if seed is None:
        seed = secrets.randbits(63)
    # Prompt 0 uses the seed as given (what longrl's engine does with a group seed); others derive from it.
    seeds = [seed if i == 0 else group_seed(seed, i) for i in range(len(prompts))]
    params = SamplingParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                            stop_token_ids=stops)
    _check_work(prompts, n, max_tokens, served)
    return n, params, seeds


def request_tokens(prompts: list[list[int]], n: int, max_tokens: int) -> int:
    """A request's work: the sum over its prompts of n x (prompt tokens + max_tokens)."""
    return sum(n * (len(p) + max_tokens) for p in prompts)


def _check_work(prompts: list[list[int]], n: int, max_tokens: int, served: Served) -> None:
    work = request_tokens(prompts, n, max_tokens)
    if work > served.max_request_tokens:
        size = f"{len(prompts)} prompt(s) of up to {max(map(len, prompts))} tokens x n={n} x (prompt + max_tokens={max_tokens})"
        raise RequestError(400, f"this request asks for {work:,} tokens of work ({size}); this server takes at most "
                                f"{served.max_request_tokens:,} per request: lower n, max_tokens or the number of prompts, "
                                "or split the request")


def _flags(body: dict) -> tuple[bool, bool]:
    flags = []
    for name, default in (("return_token_ids", False), ("skip_special_tokens", True)):
        value = body.get(name, default)
        if not isinstance(value, bool):
            raise RequestError(400, f"`{name}` must be true or false")
        flags.append(value)
    return flags[0], flags[1]


def parse_completion(body: Any, served: Served) -> Job:
    """A `/v1/completions` request: `prompt` is text, token ids, or a list of either."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    check_model(body, served)
    _check_unsupported(body, allowed=("logprobs",))
    logprobs = body.get("logprobs")
    if logprobs is not None and (isinstance(logprobs, bool) or logprobs != 0):
        raise RequestError(400, f"`logprobs` must be 0 (the sampled tokens' log-probs; longrl serve returns no "
                                f"alternatives), got {logprobs!r}")
    prompt = body.get("prompt")
    add_special = body.get("add_special_tokens", True) is not False
    if isinstance(prompt, str):
        texts: list = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
        texts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str | list) for p in prompt):
        texts = list(prompt)
    else:
        raise RequestError(400, "`prompt` must be a string, a list of token ids, or a list of either")
    prompts = []
    for i, p in enumerate(texts):
        if isinstance(p, str):
            ids = served.tokenizer(p, add_special_tokens=add_special)["input_ids"]
            if not ids:
                raise RequestError(400, f"prompt {i} is empty")
            prompts.append(list(ids))
        else:
            prompts.append(_ids(p, served.vocab_size, f"prompt {i}"))
    n, params, seeds = _sampling(body, served, prompts, COMPLETION_MAX_TOKENS, ("max_tokens",))
    return Job(prompts, n, params, seeds, *_flags(body), chat=False, logprobs=logprobs is not None)


def _message_text(message: Any, i: int) -> dict[str, str]:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise RequestError(400, f"messages[{i}] must be an object with a `role`")
    content = message.get("content")
    if isinstance(content, list):          # [{"type": "text", "text": ...}, ...]
        if not all(isinstance(c, dict) and c.get("type") == "text" and isinstance(c.get("text"), str) for c in content):
            raise RequestError(400, f"messages[{i}].content: only text parts are supported")
        content = "".join(c["text"] for c in content)
    if not isinstance(content, str):
        raise RequestError(400, f"messages[{i}].content must be text")
    return {"role": message["role"], "content": content}


def parse_chat(body: Any, served: Served, default_max_tokens: int) -> Job:
    """A `/v1/chat/completions` request: the messages go through the tokenizer's chat template."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    check_model(body, served)
    _check_unsupported(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "`messages` must be a non-empty list")
    chat = [_message_text(m, i) for i, m in enumerate(messages)]
    try:
        text = served.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # a template may reject a conversation (roles, order): the client's problem
        raise RequestError(400, f"the chat template rejected the messages: {exc}") from None
    prompt = list(served.tokenizer.encode(text, add_special_tokens=False))
    n, params, seeds = _sampling(body, served, [prompt], default_max_tokens, ("max_completion_tokens", "max_tokens"))
    return Job([prompt], n, params, seeds, *_flags(body), chat=True)


def _choice_fields(job: Job, prompt: list[int], ids: list[int], truncated: bool, served: Served) -> tuple[str, dict]:
    stopped = not truncated and bool(ids) and ids[-1] in job.params.stop_token_ids
    body = ids[:-1] if stopped else ids
    text = served.tokenizer.decode(body, skip_special_tokens=job.skip_special_tokens)
    fields: dict[str, Any] = {"finish_reason": "stop" if stopped else "length",
                              "matched_stop": ids[-1] if stopped else None, "stop_reason": ids[-1] if stopped else None}
    if job.return_token_ids:
        fields.update(token_ids=list(ids), prompt_token_ids=list(prompt))
    return text, fields


def _token_logprobs(ids: list[int], logprobs: list[float], served: Served) -> dict[str, Any]:
    """A choice's `logprobs` object (OpenAI's completions shape), the sampled tokens only."""
    return {"tokens": [served.tokenizer.decode([t], skip_special_tokens=False) for t in ids],
            "token_logprobs": [float(x) for x in logprobs], "top_logprobs": None, "text_offset": None}


def build_reply(job: Job, groups: list[GroupRollout], served: Served, version: str) -> dict[str, Any]:
    """The `/completions` or `/chat/completions` payload: choice k*n + j is sample j of prompt k."""
    choices = []
    for k, group in enumerate(groups):
        for j, (ids, truncated) in enumerate(zip(group.completions, group.truncated)):
            text, fields = _choice_fields(job, group.prompt_ids, ids, truncated, served)
            index = k * job.n + j
            if job.chat:
                choices.append({"index": index, "message": {"role": "assistant", "content": text}, **fields})
            else:
                logprobs = _token_logprobs(ids, group.logprobs[j], served) if job.logprobs else None
                choices.append({"index": index, "text": text, "logprobs": logprobs, **fields})
    prompt_tokens = sum(len(p) for p in job.prompts)
    completion_tokens = sum(len(c) for g in groups for c in g.completions)
    return {
        "id": f"{'chatcmpl' if job.chat else 'cmpl'}-{uuid.uuid4().hex}",
        "object": "chat.completion" if job.chat else "text_completion",
        "created": int(time.time()), "model": served.name, "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
        "metadata": {"weight_version": version},
    }
