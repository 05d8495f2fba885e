"""Rollouts from an OpenAI-compatible server holding the policy: SGLang, `vllm serve`, `longrl serve`.

    generator = RemoteGenerator(cfg.rollout.server, stops, weights_dir=run_dir / "served")
    generator.sync_weights(policy, "step-0")       # write safetensors, reload, check the reported version
    groups = generator.generate(prompt_ids, group_size=8, params=params, seeds=seeds)

The `Generator` of `rollout.backend: server`. Token-exact: each prompt goes as token ids to
`POST /v1/completions` with `n` = G (one request per group, so the server's prefix cache shares the
prompt), the group's seed, `max_tokens`, temperature / top-p / top-k, longrl's stop token ids (the
in-process engine's stop rule: the server's own eos ids must be among them, else its replies are
refused; vLLM gets `ignore_eos`, which leaves `stop_token_ids` in force) and `return_token_ids`
(vLLM and SGLang both answer with `choices[].token_ids`, the completion's ids, and `prompt_token_ids`). A reply that
lacks token ids, changes the prompt, returns another number of samples, runs past `max_tokens`,
stops without a stop token or carries one mid-completion is an error, never a silently wrong rollout.
Servers that trim the stop token report it (SGLang `matched_stop`, vLLM `stop_reason`); it is put back.

Weights: `sync_weights(model, version, dist)` writes the model as a Hugging Face folder
(`weights_dir/<version>`; the server must see the same path) in the served dtype (`rollout.server.dtype`:
bf16 weights for a bf16 server, never the fp32 masters), one full tensor gathered at a time and split
into `shard_mb` files plus an index when larger (`engine/handover.py`); under torchrun every rank
gathers, rank 0 alone writes and reloads, and every rank learns the outcome. It asks the server to
reload the folder, and checks that the server reports `version` before anything else happens (a server
that names its reloads itself, as `longrl serve` does ("step-3@9f2c41d0"), says the name in the
reload's reply, `weight_version`: that name is then the one checked, and `self.version`); every
`generate` first checks the version again (and each reply's `metadata.weight_version` where the
server gives one, as `longrl serve` does), so a server that restarted or was reloaded by someone
else fails loudly instead of rolling out a stale policy. Reload protocols (`reload_api`):
- sglang (SGLang, and `longrl serve`): `POST /update_weights_from_disk {model_path, weight_version}`,
  version from `GET /model_info` (older SGLang: `GET /get_weight_version`).
- vllm (`vllm serve` with VLLM_SERVER_DEV_MODE=1): `POST /pause`, `POST /collective_rpc
  {method: reload_weights, kwargs: {weights_path}}`, `POST /update_weight_version {new_version}`,
  `POST /resume`; version from `GET /weight_info`. (vLLM's newer native transfer, NCCL or CUDA IPC (`init_weight_transfer_engine`,
  `start_weight_update`, `update_weights`, `finish_weight_update`), needs a GPU on both sides; longrl does not speak it.)
These live at the server root (base_url without its trailing /v1). Requests go through
`longrl.http.OpenAIClient`: `concurrency` in flight, `timeout_s` per attempt, 429 / 5xx / timeouts /
dropped connections retried `max_attempts` times with exponential backoff; a server that stays down,
is too slow, answers garbage or fails to reload raises RolloutServerError (exit status 2). The RL
run stays resumable: rerunning it publishes its weights again before its first rollout.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from longrl.config.rl import RolloutServerConfig
from longrl.engine.distributed import SINGLE, Dist
from longrl.engine.generate import GroupRollout
from longrl.engine.handover import write_served
from longrl.engine.sampling import SamplingParams
from longrl.errors import UserError
from longrl.http import OpenAIClient, RetryPolicy, ServerError, snippet

MAX_BACKOFF_S = 60.0   # cap on one wait between attempts


class RolloutServerError(UserError):
    """The rollout server failed for good, answered something unusable, or holds other weights than published."""


def server_root(base_url: str) -> str:
    """The server's root URL from its OpenAI API root: "http://h:30000/v1" -> "http://h:30000"."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def completion_body(model: str, prompt: list[int], group_size: int, params: SamplingParams, seed: int,
                    reload_api: str, logprobs: bool = False) -> dict[str, Any]:
    """The `/completions` request for one group: token ids in, G samples, token ids out (and, with
    `logprobs`, the sampled tokens' log-probs: `logprobs: 0`)."""
    body: dict[str, Any] = {
        "model": model, "prompt": list(prompt), "n": group_size, "max_tokens": params.max_new_tokens,
        "temperature": params.temperature, "top_p": params.top_p, "seed": seed,
        "stop_token_ids": sorted(params.stop_token_ids), "return_token_ids": True, "skip_special_tokens": False,
    }
    if params.top_k > 0:
        body["top_k"] = params.top_k
    if logprobs:
        body["logprobs"] = 0
    if reload_api == "sglang":
        body["no_stop_trim"] = True          # keep the matched stop token in the output
        # no ignore_eos: SGLang's also switches stop_token_ids off; its eos ids must then be among longrl's
    else:
        body["ignore_eos"] = True            # vLLM: only its own eos is ignored; stop_token_ids still stop
    return body


def read_group(payload: Any, prompt: list[int], group_size: int, params: SamplingParams) -> GroupRollout:
    """The GroupRollout in a `/completions` reply; raises ValueError saying what is wrong with it.

    Log-probs are the server's `choices[].logprobs.token_logprobs` when it sent them (asked for with
    `rollout.server.logprobs`), else NaN; the trainer recomputes what it trains on either way.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
        raise ValueError("no choices")
    choices = payload["choices"]
    if not all(isinstance(c, dict) for c in choices):
        raise ValueError("choices are not objects")
    if len(choices) != group_size:
        raise ValueError(f"asked for n={group_size} samples, got {len(choices)} (does the server honour `n`?)")
    stops = set(params.stop_token_ids)
    completions, truncated, logprobs = [], [], []
    for choice in sorted(choices, key=lambda c: c.get("index", 0)):
        ids = choice.get("token_ids")
        if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids):
            raise ValueError("no `token_ids` in a choice (the server must support `return_token_ids`: vLLM >= 0.10.2, SGLang)")
        echoed = choice.get("prompt_token_ids", payload.get("prompt_token_ids"))
        if echoed is not None and list(echoed) != list(prompt):
            raise ValueError(f"the server changed the prompt ({len(prompt)} ids sent, {len(echoed)} echoed)")
        ids = list(ids)
        stopped = bool(ids) and ids[-1] in stops
        finish = choice.get("finish_reason")
        if finish == "stop" and not stopped:
            matched = choice.get("matched_stop", choice.get("stop_reason"))
            if isinstance(matched, int) and not isinstance(matched, bool) and matched not in stops:
                raise ValueError(f"the server stopped on token {matched}, which is not one of longrl's stop ids "
                                 f"{sorted(stops)}: give the served model the trainer's eos ids (generation_config)")
            if not (isinstance(matched, int) and matched in stops):
                raise ValueError(f"finish_reason 'stop' without one of the stop token ids {sorted(stops)}")
            ids.append(matched)       # the server trimmed the stop token: put it back
            stopped = True
        elif finish not in ("stop", "length"):
            raise ValueError(f"finish_reason {finish!r}")
        if len(ids) > params.max_new_tokens:
            raise ValueError(f"{len(ids)} tokens for max_tokens={params.max_new_tokens}")
        if any(t in stops for t in ids[:-1]):
            raise ValueError("a stop token in the middle of a completion (did the server ignore stop_token_ids?)")
        if not stopped and len(ids) != params.max_new_tokens:
            why = ("the prompt and max_tokens exceed the server's context window?" if finish == "length"
                   else "it ends without a stop token")
            raise ValueError(f"a completion of {len(ids)} < max_tokens={params.max_new_tokens} tokens: {why}")
        completions.append(ids)
        truncated.append(not stopped)
        logprobs.append(choice_logprobs(choice, len(ids)))
    return GroupRollout(prompt_ids=list(prompt), completions=completions, logprobs=logprobs, truncated=truncated)


def choice_logprobs(choice: dict, n_tokens: int) -> list[float]:
    """The sampled tokens' log-probs a choice carries (OpenAI's completions shape), or NaN per token."""
    block = choice.get("logprobs")
    found = block.get("token_logprobs") if isinstance(block, dict) else None
    if found is None:
        return [math.nan] * n_tokens
    if not isinstance(found, list) or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in found):
        raise ValueError("`logprobs.token_logprobs` is not a list of numbers")
    if len(found) != n_tokens:        # a trimmed stop token has no log-prob: pad it as unknown
        if len(found) != n_tokens - 1:
            raise ValueError(f"{len(found)} token log-probs for {n_tokens} tokens")
        found = [*found, math.nan]
    return [float(x) for x in found]


class RemoteGenerator:
    """`Generator` over a rollout server (see the module docstring).

    Args:
        cfg: the `rollout.server` config section.
        weights_dir: where sync_weights writes the folders the server loads (`cfg.weights_dir` wins).
        dtype: the dtype the server serves: the hand-over's (`cfg.dtype` resolved by the caller).
    """

    def __init__(self, cfg: RolloutServerConfig, weights_dir: str | Path, dtype: torch.dtype = torch.float32):
        self.cfg, self.dtype = cfg, dtype
        self.weights_dir = Path(cfg.weights_dir or weights_dir).resolve()
        retry = RetryPolicy(cfg.max_attempts, cfg.backoff_s, MAX_BACKOFF_S, cfg.timeout_s)
        self.api = OpenAIClient(cfg.base_url, api_key_env=cfg.api_key_env, concurrency=cfg.concurrency, retry=retry)
        self.control = OpenAIClient(server_root(cfg.base_url), api_key_env=cfg.api_key_env, concurrency=1, retry=retry)
        self.model_name = cfg.model_name
        self.version: str | None = None          # what the server must report; set by sync_weights
        self.published: Path | None = None       # the folder it loaded last
        self.requests = 0                        # completion requests sent
        self.sync_s, self.sync_bytes = 0.0, 0    # hand-over time and tensor bytes since handover_metrics()

    def __repr__(self) -> str:
        return f"RemoteGenerator(url={self.cfg.base_url!r}, reload_api={self.cfg.reload_api!r}, version={self.version!r})"

    def sync_weights(self, model, version: str, dist: Dist = SINGLE) -> None:
        """Write `model` to weights_dir/<version> in the served dtype, have the server reload it, check it
        reports `version`. Under torchrun every rank calls it: all gather, rank 0 writes and reloads, all
        learn the served version (or rank 0's RolloutServerError, raised on every rank)."""
        began = time.perf_counter()
        written = write_served(model, self.weights_dir / version, self.dtype, dist, self.cfg.shard_mb << 20)
        outcome: dict[str, Any] | None = None
        if dist.is_main:
            try:
                outcome = {"version": asyncio.run(self._session(self._publish(written.path, version))),
                           "bytes": written.bytes}
            except RolloutServerError as exc:
                outcome = {"error": str(exc)}
        outcome = dist.broadcast_json(outcome)
        if "error" in outcome:
            raise RolloutServerError(outcome["error"])
        if dist.is_main and self.published is not None and self.published != written.path:
            shutil.rmtree(self.published, ignore_errors=True)     # the server no longer reads it
        self.version, self.published = outcome["version"], written.path
        self.sync_s += time.perf_counter() - began
        self.sync_bytes += int(outcome["bytes"])

    def handover_metrics(self) -> dict[str, float]:
        """weights/sync_s and weights/sync_bytes of the hand-overs since the last call (then reset)."""
        out = {"weights/sync_s": round(self.sync_s, 4), "weights/sync_bytes": float(self.sync_bytes)}
        self.sync_s, self.sync_bytes = 0.0, 0
        return out

    def generate(self, prompts: list[list[int]], group_size: int, params: SamplingParams,
                 seeds: list[int]) -> list[GroupRollout]:
        """G samples of each prompt from the server; seeds[i] is prompt i's request seed."""
        if len(seeds) != len(prompts):
            raise ValueError(f"one seed per prompt: {len(prompts)} prompts, {len(seeds)} seeds")
        if self.version is None:
            raise RolloutServerError(f"{self.cfg.base_url}: no weights published yet (call sync_weights first)")
        return asyncio.run(self._session(self._generate(prompts, group_size, params, seeds)))

    async def _session(self, work):
        """Run `work`, then close the connections (each asyncio.run is a new event loop)."""
        try:
            return await work
        finally:
            await self.api.aclose()
            await self.control.aclose()

    async def _generate(self, prompts, group_size, params, seeds) -> list[GroupRollout]:
        reported = await self.reported_version()
        if reported != self.version:
            raise RolloutServerError(
                f"{self.cfg.base_url} reports weight version {reported!r}, but the trainer published {self.version!r}: "
                "the server restarted or someone else reloaded it; rerun the command to publish the policy again")
        model = await self._model_name()
        return list(await asyncio.gather(*(self._complete(model, i, prompt, group_size, params, seed)
                                           for i, (prompt, seed) in enumerate(zip(prompts, seeds)))))

    async def _complete(self, model, i, prompt, group_size, params, seed) -> GroupRollout:
        body = completion_body(model, prompt, group_size, params, seed, self.cfg.reload_api, self.cfg.logprobs)
        self.requests += 1
        payload = await self._send(self.api, "POST", "/completions", body, f"prompt {i} (rollout)")
        served = payload.get("metadata", {}).get("weight_version") if isinstance(payload, dict) \
            and isinstance(payload.get("metadata"), dict) else None
        if served is not None and served != self.version:      # servers that say which weights answered
            raise RolloutServerError(f"{self.cfg.base_url}/completions, prompt {i}: answered by weight version "
                                     f"{served!r}, not the published {self.version!r}")
        try:
            return read_group(payload, prompt, group_size, params)
        except ValueError as exc:
            raise RolloutServerError(f"{self.cfg.base_url}/completions, prompt {i}: malformed reply: {exc}; "
                                     f"reply: {snippet(json.dumps(payload), 300)}") from None

    async def _model_name(self) -> str:
        if self.model_name is None:
            payload = await self._send(self.api, "GET", "/models", None, "listing models")
            try:
                self.model_name = str(payload["data"][0]["id"])
            except (KeyError, IndexError, TypeError):
                raise RolloutServerError(f"{self.cfg.base_url}/models lists no model; set rollout.server.model_name") from None
        return self.model_name

    async def _publish(self, path: Path, version: str) -> str:
        """Have the server load `path`; the version it now serves (`version`, or the name the server gave it)."""
        if self.cfg.reload_api == "sglang":
            payload = await self._send(self.control, "POST", "/update_weights_from_disk",
                                       {"model_path": str(path), "weight_version": version, "flush_cache": True},
                                       f"reloading {path}")
            if not isinstance(payload, dict) or payload.get("success") is not True:
                message = payload.get("message") if isinstance(payload, dict) else payload
                raise RolloutServerError(f"{self.control.base_url}/update_weights_from_disk refused {path}: {message}")
            named = payload.get("weight_version")            # longrl serve names each reload itself
            if isinstance(named, str) and named:
                version = named
        else:
            await self._send(self.control, "POST", "/pause", {}, "pausing generation for a reload")
            try:
                await self._send(self.control, "POST", "/collective_rpc",
                                 {"method": "reload_weights", "kwargs": {"weights_path": str(path)}}, f"reloading {path}")
                await self._send(self.control, "POST", "/update_weight_version", {"new_version": version},
                                 "setting the weight version")
            finally:
                await self._send(self.control, "POST", "/resume", {}, "resuming generation after a reload")
        reported = await self.reported_version()
        if reported != version:
            raise RolloutServerError(f"{self.control.base_url} reloaded {path} but reports weight version {reported!r}, "
                                     f"not {version!r}")
        return version

    async def reported_version(self) -> str | None:
        """The weight version the server reports now."""
        if self.cfg.reload_api == "vllm":
            payload = await self._send(self.control, "GET", "/weight_info", None, "reading the weight version")
        else:
            try:
                payload = await self.control.request("GET", "/model_info")
                payload = payload.payload
            except ServerError as exc:
                if exc.status != 404:
                    raise self._error(exc, "reading the weight version") from None
                payload = await self._send(self.control, "GET", "/get_weight_version", None, "reading the weight version")
        if not isinstance(payload, dict) or "weight_version" not in payload:
            raise RolloutServerError(f"{self.control.base_url}: no weight_version in its reply: "
                                     f"{snippet(json.dumps(payload), 200)}")
        version = payload["weight_version"]
        return None if version is None else str(version)

    async def _send(self, client: OpenAIClient, method: str, path: str, body: dict | None, what: str) -> Any:
        try:
            return (await client.request(method, path, body)).payload
        except ServerError as exc:
            raise self._error(exc, what) from None

    def _error(self, exc: ServerError, what: str) -> RolloutServerError:
        return RolloutServerError(f"rollout server, {what}: {exc.url}: {exc.problem}")
