"""The on-disk judge verdict cache."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from longrl.rewards.cache import CachedVerdict, JudgeCache, cache_key, default_cache_dir


def test_key_covers_every_field_and_is_unambiguous():
    base = cache_key("m", "q", "p", "g")
    assert base == cache_key("m", "q", "p", "g") and len(base) == 64
    variants = [cache_key("m2", "q", "p", "g"), cache_key("m", "q2", "p", "g"), cache_key("m", "q", "p2", "g"),
                cache_key("m", "q", "p", "g2"), cache_key("m", "qp", "", "g"), cache_key("m", "q", "pg", "")]
    assert len({base, *variants}) == 7


def test_key_covers_the_judge_prompt_and_its_version():
    base = cache_key("m", "q", "p", "g")
    assert cache_key("m", "q", "p", "g", "longrl") == base
    # the default prompt's version is in the key: verdicts given under the v1 prompt (tagged fields, before
    # issue 25 quoted them as JSON) are not served for the v2 prompt
    assert base == hashlib.sha256(json.dumps(["longrl-judge-v2", "m", "q", "p", "g"]).encode()).hexdigest()
    assert cache_key("m", "q", "p", "g", "published") != base


def test_default_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "longrl" / "judge"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "longrl" / "judge"


def test_put_get_and_layout(tmp_path):
    cache = JudgeCache(tmp_path)
    key = cache_key("m", "q", "p", "g")
    assert cache.get(key) is None
    cache.put(key, CachedVerdict(True, "same [[YES]]"))
    assert cache.get(key) == CachedVerdict(True, "same [[YES]]")
    assert cache.path(key) == tmp_path / key[:2] / f"{key}.json" and len(cache) == 1
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_unreadable_entries_are_misses(tmp_path):
    cache = JudgeCache(tmp_path)
    key = cache_key("m", "q", "p", "g")
    cache.path(key).parent.mkdir(parents=True)
    for text in ['{"equivalent": tr', '["x"]', '{"equivalent": "yes", "raw": ""}', ""]:
        cache.path(key).write_text(text)
        assert cache.get(key) is None
    cache.put(key, CachedVerdict(False, "no"))
    assert cache.get(key) == CachedVerdict(False, "no")


def test_concurrent_writers_never_expose_partial_entries(tmp_path):
    cache = JudgeCache(tmp_path)
    keys = [cache_key("m", "q", str(i), "g") for i in range(5)]
    long_raw = "x" * 50_000 + " [[YES]]"
    problems: list[str] = []
    stop = threading.Event()

    def write():
        for _ in range(40):
            for key in keys:
                cache.put(key, CachedVerdict(True, long_raw))

    def read():
        while not stop.is_set():
            for key in keys:
                path = cache.path(key)
                try:
                    text = Path(path).read_text()
                except FileNotFoundError:
                    continue
                try:
                    json.loads(text)
                except ValueError:
                    problems.append(key)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write) for _ in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert problems == []
    assert all(cache.get(k) == CachedVerdict(True, long_raw) for k in keys)
    assert not list(tmp_path.rglob("*.tmp"))


def test_entries_get_the_mode_the_umask_gives(tmp_path):
    import os

    old = os.umask(0o002)                    # a group-shared cache: rw-rw-r--, not mkstemp's private 0600
    try:
        cache = JudgeCache(tmp_path)
        cache.put("ab" + "0" * 62, CachedVerdict(True, "yes"))
    finally:
        os.umask(old)
    assert cache.path("ab" + "0" * 62).stat().st_mode & 0o777 == 0o664
