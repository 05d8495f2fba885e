"""Keeping API keys and URL credentials out of every text longrl prints or writes.

    redact('server said: {"key": "sk-\\"abc"}', ["sk-\"abc"])   # 'server said: {"key": "***"}'
    display_url("http://user:sk-123@host:8000/v1")              # 'http://***@host:8000/v1'
    url_secrets("http://user:sk-123@host:8000/v1")              # ['user', 'sk-123']
    scrub_urls({"eval": {"model": "http://u:p@h/v1"}})           # {'eval': {'model': 'http://***@h/v1'}}

A secret can come back from a server in another encoding than it was sent: echoed inside a JSON
string (`"` as `\\"`, `/` as `\\/`, non-ASCII as `\\uXXXX`, possibly escaped twice), percent-encoded
in a URL or a form, or as the base64 of HTTP Basic credentials. `secret_forms` lists every such
form and `redact` replaces each with "***". URLs are shown with their user and password replaced
by "***" (`display_url`); the credentials stay usable for the request itself.
This module imports only the standard library: config and report code use it without pulling in
an HTTP client.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

MASK = "***"


def _json_escaped(text: str) -> list[str]:
    forms = [json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]]
    return forms + [f.replace("/", "\\/") for f in forms]


def secret_forms(secret: str) -> list[str]:
    """`secret` as it may appear in a reply or an error: raw, JSON-escaped (once and twice, with and
    without escaped "/" and non-ASCII), percent-encoded (URL path and form). Longest first; "" gives []."""
    if not secret:
        return []
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    for once in _json_escaped(secret):
        forms.add(once)
        forms.update(_json_escaped(once))
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secrets: str | Iterable[str]) -> str:
    """`text` with every form of every secret replaced by "***" (empty secrets hide nothing)."""
    if isinstance(secrets, str):
        secrets = [secrets]
    forms = sorted({f for s in secrets for f in secret_forms(s)}, key=len, reverse=True)
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def url_secrets(url: str) -> list[str]:
    """The credentials a URL carries: its password (raw and percent-decoded), its user when there
    is no password (a token as user name) or when it is 8+ characters long, and the base64 of the
    HTTP Basic credentials they become; [] for a URL without them. (A short user name next to a
    password is not redacted in free text, where it would mask every such word: `display_url`
    still hides it in URLs.)"""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    if "@" not in parts.netloc:
        return []
    userinfo = parts.netloc.rsplit("@", 1)[0]
    user, _, password = userinfo.partition(":")
    names = [user, unquote(user)] if not password or len(unquote(user)) >= 8 else []
    found = [v for v in {*names, password, unquote(password)} if v]
    basic = f"{unquote(user)}:{unquote(password)}".encode()
    found.append(base64.b64encode(basic).decode())
    return found


def display_url(url: str) -> str:
    """`url` with its user and password (if any) replaced by "***": safe to print or write."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"{MASK}@{host}", parts.path, parts.query, parts.fragment))


def scrub_urls(value: Any) -> Any:
    """A copy of a JSON-like value with every credential-carrying http(s) URL string shown by `display_url`."""
    if isinstance(value, str):
        return display_url(value) if value.startswith(("http://", "https://")) else value
    if isinstance(value, dict):
        return {k: scrub_urls(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_urls(v) for v in value]
    return value
