"""Secrets in every encoding a server may echo them in, and URLs shown without their credentials."""

from __future__ import annotations

import base64
import json

import pytest

from longrl.secrets import display_url, redact, scrub_urls, secret_forms, url_secrets

KEY = 'sk-"q\\uo/te\u00e9'  # a key with a quote, a backslash, a slash and a non-ASCII letter

REDACT_CASES = [
    (f"key {KEY} echoed", "raw"),
    (json.dumps({"error": f"bad key {KEY}"}), "JSON-escaped (ensure_ascii)"),
    (json.dumps({"error": f"bad key {KEY}"}, ensure_ascii=False), "JSON-escaped, non-ASCII kept"),
    (json.dumps({"error": f"bad key {KEY}"}).replace("/", "\\/"), "JSON-escaped with escaped slashes"),
    (json.dumps(json.dumps({"error": KEY})), "JSON-escaped twice (a body quoted inside a log line)"),
    ("GET /v1?api_key=" + __import__("urllib.parse").parse.quote(KEY, safe=""), "percent-encoded"),
    ("api_key=" + __import__("urllib.parse").parse.quote_plus(KEY), "form-encoded"),
]


@pytest.mark.parametrize("text,reason", REDACT_CASES, ids=[c[-1] for c in REDACT_CASES])
def test_redact_every_encoding(text, reason):
    hidden = redact(text, [KEY])
    assert "***" in hidden, reason
    for form in secret_forms(KEY):
        assert form not in hidden, (reason, form)
    assert "q\\\\uo" not in hidden and "te\\u00e9" not in hidden


def test_redact_keeps_other_text_and_empty_secrets():
    assert redact("nothing secret", ["sk-1"]) == "nothing secret"
    assert redact("any text", ["", ""]) == "any text"
    assert redact("key sk-1 and sk-1 again", "sk-1") == "key *** and *** again"


@pytest.mark.parametrize("url,shown", [
    ("http://user:sk-123@host:8000/v1", "http://***@host:8000/v1"),
    ("https://sk-token@api.example.com/v1", "https://***@api.example.com/v1"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("http://host/v1/path@with-at", "http://host/v1/path@with-at"),
])
def test_display_url(url, shown):
    assert display_url(url) == shown


def test_url_secrets_include_decoded_and_basic_auth_forms():
    secrets = url_secrets("http://me:sk%2Dabc%40x@host/v1")
    assert "sk-abc@x" in secrets and "sk%2Dabc%40x" in secrets and "me" not in secrets  # a short user name stays
    assert base64.b64encode(b"me:sk-abc@x").decode() in secrets
    assert "sk-token-as-user" in url_secrets("http://sk-token-as-user@host/v1")
    assert url_secrets("http://host/v1") == []


def test_scrub_urls_in_nested_config():
    cfg = {"eval": {"model": "http://u:pw@h/v1", "benchmarks": ["hotpotqa"], "judge": {"base_url": "https://k@j/v1"}}, "n": 3}
    assert scrub_urls(cfg) == {"eval": {"model": "http://***@h/v1", "benchmarks": ["hotpotqa"],
                                        "judge": {"base_url": "https://***@j/v1"}}, "n": 3}
