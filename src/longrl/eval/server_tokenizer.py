"""The served model's own tokenizer, through the server's `/tokenize` and `/detokenize` (vLLM, SGLang).

    tokenizer = ServerTokenizer.connect("http://127.0.0.1:8000/v1", model_name=None, api_key_env="LONGRL_API_KEY")
    tokenizer.encode(text, add_special_tokens=False)       # POST {root}/tokenize {"model", "prompt", ...}
    tokenizer.decode(ids)                                   # POST {root}/detokenize {"model", "tokens"}
    tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

`longrl eval --model URL` without `--tokenizer` counts and middle-truncates prompts with it: the
evaluation then needs nothing but the server. Both endpoints live at the server's root (the base URL
without `/v1`). The chat template is learnt once: a user turn holding a marker is tokenized as chat
messages (`{"messages", "add_generation_prompt": true}`, vLLM's chat form) and decoded back; the text
around the marker frames every prompt. A server whose `/tokenize` takes no messages (SGLang) frames
nothing: prompt lengths then leave out the template's few tokens (said once on the console). Every
call is a blocking HTTP request (prompts are prepared in worker threads). The API key comes from the
environment variable `api_key_env` and never appears in messages.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import httpx

from longrl.console import info
from longrl.errors import ConfigError, UserError

MARKER = "longrl-document-marker-5d1c"
TIMEOUT_S = 300.0


class ServerTokenizer:
    """A tokenizer-shaped client of a model server's tokenization endpoints (what eval prompts need)."""

    def __init__(self, base_url: str, model_name: str | None, api_key_env: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        self.model_name = model_name
        key = os.environ.get(api_key_env) if api_key_env else None
        self._client = httpx.Client(headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=TIMEOUT_S)
        self._frame: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self.name_or_path = f"{self.root}/tokenize"    # what eval's protocol.json records as the tokenizer

    @classmethod
    def connect(cls, base_url: str, model_name: str | None = None, api_key_env: str | None = None) -> ServerTokenizer:
        """A client checked with one call; ConfigError saying to pass --tokenizer when the server cannot tokenize."""
        tokenizer = cls(base_url, model_name, api_key_env)
        try:
            if tokenizer.model_name is None:
                tokenizer.model_name = tokenizer._first_model()
            tokenizer.encode("probe", add_special_tokens=False)
        except UserError as exc:
            raise ConfigError(f"evaluating a server needs the served model's tokenizer to count and truncate prompts, "
                              f"and the server's /tokenize did not answer ({exc}): pass --tokenizer PATH_OR_HUB_NAME "
                              "(or set eval.tokenizer)") from None
        return tokenizer

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.model_name is not None:
            body = {"model": self.model_name, **body}
        try:
            response = self._client.post(self.root + path, json=body)
        except httpx.HTTPError as exc:
            raise UserError(f"{self.root}{path}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise UserError(f"{self.root}{path}: HTTP {response.status_code} {response.text[:200]!r}")
        try:
            payload = response.json()
        except ValueError:
            raise UserError(f"{self.root}{path}: the reply is not JSON") from None
        if not isinstance(payload, dict):
            raise UserError(f"{self.root}{path}: unexpected reply {str(payload)[:200]!r}")
        return payload

    def _first_model(self) -> str | None:
        try:
            response = self._client.get(self.base_url + "/models")
            return str(response.json()["data"][0]["id"]) if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            return None

    @staticmethod
    def _tokens(payload: dict[str, Any], where: str) -> list[int]:
        tokens = payload.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise UserError(f"{where}: no token list in the reply")
        return tokens

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._tokens(self._post("/tokenize", {"prompt": text, "add_special_tokens": add_special_tokens}),
                            f"{self.root}/tokenize")

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        payload = self._post("/detokenize", {"tokens": list(ids)})
        text = payload.get("prompt", payload.get("text"))        # vLLM: "prompt"; SGLang: "text"
        if not isinstance(text, str):
            raise UserError(f"{self.root}/detokenize: no text in the reply")
        return text

    def frame(self) -> tuple[str, str]:
        """(text before, text after) the user turn in the server's chat template; ('', '') if it cannot tell."""
        with self._lock:
            if self._frame is None:
                self._frame = self._learn_frame()
            return self._frame

    def _learn_frame(self) -> tuple[str, str]:
        try:
            payload = self._post("/tokenize", {"messages": [{"role": "user", "content": MARKER}],
                                               "add_generation_prompt": True, "add_special_tokens": False})
            text = self.decode(self._tokens(payload, f"{self.root}/tokenize"))
        except UserError as exc:
            info(f"eval: {self.root}/tokenize takes no chat messages ({exc}); prompt lengths leave out the chat "
                 "template's tokens (pass --tokenizer to count them)")
            return "", ""
        if text.count(MARKER) != 1:
            info(f"eval: {self.root}/tokenize rendered the chat template unexpectedly; prompt lengths leave out its tokens")
            return "", ""
        before, after = text.split(MARKER)
        return before, after

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        """The chat prompt of one user turn as the server renders it (text; eval never asks for ids here)."""
        if tokenize or not add_generation_prompt or len(messages) != 1 or messages[0].get("role") != "user":
            raise ValueError("ServerTokenizer renders one user turn followed by the generation prompt, as text")
        before, after = self.frame()
        return before + messages[0]["content"] + after

    def close(self) -> None:
        self._client.close()
