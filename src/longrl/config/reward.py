"""Config section `reward`: rule verification (or your own function), the optional LLM judge, overlong shaping."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from longrl.config.base import Section


class JudgeConfig(Section):
    """An OpenAI-compatible `POST {base_url}/chat/completions` server (vllm serve, SGLang, hosted APIs)."""

    base_url: str = Field(pattern=r"^https?://\S+$")  # e.g. http://127.0.0.1:8000/v1 (requests go to {base_url}/chat/completions)
    model: str                                 # model name sent in the request (also part of the cache key)
    api_key_env: str | None = "LONGRL_JUDGE_API_KEY"  # environment variable holding the key; never logged
    concurrency: int = Field(32, ge=1)         # requests in flight
    timeout_s: float = Field(60.0, gt=0)       # per attempt
    max_attempts: int = Field(3, ge=1)         # tries per call; 429 / 5xx / timeouts / connection errors are retried
    backoff_s: float = Field(0.5, ge=0)        # wait before the 2nd attempt; doubles each attempt (or Retry-After)
    max_backoff_s: float = Field(30.0, ge=0)   # cap on one wait
    temperature: float = Field(0.0, ge=0)      # 0 = deterministic verdicts (the paper's judge runs at 0)
    max_tokens: int = Field(256, ge=1)         # reply budget: a short justification and the verdict
    cache: bool = True                         # keep successful verdicts on disk, keyed by prompt, model, question, prediction, gold
    cache_dir: str | None = None               # cache root (entries in <root>/judge); None = $XDG_CACHE_HOME/longrl or ~/.cache/longrl
    max_error_rate: float = Field(0.1, ge=0, le=1)  # failed calls / calls in a batch above this: JudgeError
    # The judge's prompt and verdict reading (rewards/judge.py), part of the cache key. longrl: the hardened
    # default (fields as tagged data with markers neutralised; verdict = the reply's LAST [[YES]]/[[NO]], none =
    # an error). published: QwenLong-L1's prompt verbatim, verdict = "YES" anywhere in the reply (else no).
    prompt: Literal["longrl", "published"] = "longrl"  # judge prompt and verdict reading: longrl (hardened) | published (QwenLong-L1 verbatim)


class OverlongConfig(Section):
    """DAPO overlong shaping: linear penalty 0 -> -1 over the last `buffer` tokens before the limit."""

    enabled: bool = False                      # apply the penalty to responses near the limit
    buffer: int = Field(1024, ge=1)            # tokens; must not exceed the response limit it applies to


class CustomRewardConfig(Section):
    """Your own scoring function, from a file the config names (verl's `custom_reward_function`; rewards/custom.py).

    Called as name(data_source, solution_str, ground_truth, extra_info, **reward_kwargs) with the task, the
    response, the list of gold answers and {question, context, response_tokens, max_response_tokens}; returns
    a number or a dict with a numeric "score". Loaded once per process, when the command starts.
    """

    path: str = Field(min_length=1)            # a .py file; a relative path is read from the working directory (as verl does)
    name: str = Field("compute_score", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # the function in that file
    reward_kwargs: dict[str, Any] = {}         # extra keyword arguments of every call (verl's reward_kwargs)
    tasks: list[str] = []                      # tasks it scores, in place of the built-in rule; [] = every task
    max_error_rate: float = Field(0.0, ge=0, le=1)  # calls that raise or return no number / calls in a batch above this: stop


class RewardConfig(Section):
    protocol: Literal["strict", "published"] = "strict"  # rule scoring: strict (holes closed) | published (the paper's eval scripts; rewards/published.py)
    require_think: bool = True                 # strict: a response without a closed </think> has no answer (published: as the scripts do)
    numeric_rel_tol: float = Field(0.0015, ge=0)  # docmath relative tolerance (0.15%)
    judge: JudgeConfig | None = None           # None = rule only
    judge_verifiers: list[str] = ["qa", "numeric"]  # verifiers whose zeros the judge may overturn ("choice" is exact)
    overlong: OverlongConfig = OverlongConfig()
    custom: CustomRewardConfig | None = None   # your function in place of the rule (README: Rewards); judge, shaping apply
