"""Who may do what on `longrl serve`: the API key, the weights root, the weight versions it names.

    check_key(headers.get("authorization"), key)     # False: answer 401
    is_loopback("0.0.0.0")                           # False: the CLI wants --api-key-env (or --no-auth)
    folder = weights_folder(root, "/runs/x/served/step-3")   # Forbidden (403) outside the root
    version = new_version("step-3")                  # "step-3@9f2c41d0": the server names every reload

- API key: with one (`--api-key-env NAME`), every route but `GET /health` needs
  `Authorization: Bearer <key>`, compared in constant time, checked on the request head before any
  body is read. Without one, anyone who reaches the port is served: bind to loopback.
- Weights root: a reload loads only a folder inside the root given at start-up (`--weights-root`),
  after resolving `..` and symlinks; a path outside it is refused with the same words whether or not
  it exists, and without the root reloads are off. The shards a folder's index names must be
  regular files inside the folder (`longrl.models.weights`): no FIFO, device or symlink escape.
- Versions: the server names every reload itself: the client's proposed `weight_version` (or
  "reload") plus "@" and 8 random hex digits, returned in the reload's reply and reported by
  `/model_info`. So no client can make the server claim a version someone else is waiting for:
  the RL trainer (`engine/remote.py`) reads the name back from the reply and then checks that every
  rollout comes from it; any other reload changes the name, and the trainer stops with an error.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import secrets
from pathlib import Path

VERSION_PATTERN = re.compile(r"[A-Za-z0-9._:+-]{1,100}")


class Forbidden(Exception):
    """A request this server refuses to carry out (HTTP 403)."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def check_key(authorization: str | None, key: str) -> bool:
    """Whether an Authorization header carries `key` as a Bearer token (constant time)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), key.encode("utf-8"))


def is_loopback(host: str) -> bool:
    """Whether binding `host` serves this machine only ("127.0.0.1", "::1", "localhost"; not "0.0.0.0" or "")."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False                      # a host name: it may resolve to any interface


def weights_folder(root: Path | None, model_path: str) -> Path:
    """The folder a reload may load: `model_path` (absolute, or relative to `root`) resolved inside `root`.

    Raises Forbidden without reloads (no root) or for a path outside the root, before touching the
    file system outside it (so the answer never says whether a folder there exists).
    """
    if root is None:
        raise Forbidden("reloads are off: this server was started without --weights-root (the folder under which "
                        "the trainer writes the weights it publishes: rollout.server.weights_dir, default <run>/served)")
    if "\0" in model_path:
        raise Forbidden("`model_path` holds a NUL character")
    candidate = Path(model_path)
    lexical = Path(os.path.normpath(candidate if candidate.is_absolute() else root / candidate))
    outside = Forbidden(f"`model_path` must be a folder inside this server's weights root {root}")
    if not lexical.is_relative_to(root):
        raise outside
    real = lexical.resolve()
    if not real.is_relative_to(root):
        raise Forbidden(f"`model_path` leads out of this server's weights root {root} (through a symlink)")
    return real


def new_version(proposed: str | None) -> str:
    """The name of a new reload: the proposed version (checked) or "reload", "@", 8 random hex digits."""
    if proposed is not None and not VERSION_PATTERN.fullmatch(proposed):
        raise ValueError("`weight_version` must be 1-100 letters, digits or . _ : + -")
    return f"{proposed or 'reload'}@{secrets.token_hex(4)}"
