"""On-disk cache of judge verdicts: one small JSON file per (judge model, question, prediction, gold).

    cache = JudgeCache(default_cache_dir())          # ~/.cache/longrl/judge (or $XDG_CACHE_HOME/longrl/judge)
    key = cache_key("deepseek-v3", question, prediction, gold)
    cache.get(key)                                   # None, or CachedVerdict(equivalent, raw)
    cache.put(key, CachedVerdict(True, "... [[YES]]"))

Why one file per entry and not sqlite: entries are written once and never updated, by many
processes at once (data-parallel ranks, an eval beside a training run), often on a shared network
filesystem where sqlite's file locking is unreliable. A file written under a temporary name and
renamed into place (`os.replace`, atomic on POSIX and NFS) needs no lock: readers see a whole entry
or none, and two writers of the same key write the same verdict. Files fan out over 256
sub-directories by the key's first two hex digits. An unreadable entry is treated as a miss and
rewritten. Only successful verdicts are stored; failed calls never are.

The key also covers the judge prompt's version (PROMPT_VERSIONS: one per `reward.judge.prompt`), so
verdicts given under one prompt are never served for another, and a changed prompt does not reuse
old verdicts.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from longrl.files import atomic_write_text, cache_root

PROMPT_VERSION = "longrl-judge-v2"  # the default prompt's (v2: fields as one JSON object, normalised before neutralising)
PROMPT_VERSIONS = {"longrl": PROMPT_VERSION, "published": "qwenlong-l1-orm-v1"}  # by `reward.judge.prompt`


@dataclass(frozen=True)
class CachedVerdict:
    equivalent: bool  # the judge's verdict
    raw: str          # the judge's reply text


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/longrl/judge`, else `~/.cache/longrl/judge`."""
    return cache_root() / "judge"


def cache_key(model: str, question: str, prediction: str, gold: str, prompt: str = "longrl") -> str:
    """sha256 hex of the unambiguous JSON encoding of (prompt version, model, question, prediction, gold).

    `prompt` is the `reward.judge.prompt` name; the default's keys are those longrl always wrote.
    """
    payload = json.dumps([PROMPT_VERSIONS[prompt], model, question, prediction, gold], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class JudgeCache:
    """Verdicts stored as `<root>/<key[:2]>/<key>.json`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedVerdict | None:
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("equivalent"), bool) or not isinstance(entry.get("raw"), str):
            return None
        return CachedVerdict(entry["equivalent"], entry["raw"])

    def put(self, key: str, verdict: CachedVerdict) -> None:
        """Write atomically (`files.atomic_write_text`: the umask's mode); concurrent writers of a key are harmless."""
        data = json.dumps({"equivalent": verdict.equivalent, "raw": verdict.raw}, ensure_ascii=False)
        atomic_write_text(self.path(key), data)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("??/*.json")) if self.root.exists() else 0
