"""The Sample: one document, one question, its gold answers. The unit every stage consumes.

One JSON object per line:

    {"id": "multihop-000007", "task": "multihop", "context": "...", "question": "...",
     "answers": ["Rilu"], "choices": null, "meta": {"trace": "<think>...</think>..."}}

`answers` may be one plain string (read as a one-element list). `meta` is free-form; longrl uses `meta.trace` (a demonstration response: `<think>...</think>`
then the answer sentence), `meta.source` (where an imported row came from) and
`meta.length` (the target prompt length of a synthetic item).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from longrl.data.tasks import TASKS
from longrl.errors import DataError

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Sample:
    id: str
    task: str
    context: str
    question: str
    answers: list[str]
    choices: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def trace(self) -> str | None:
        return self.meta.get("trace")


VERL_COLUMNS = {"data_source", "prompt", "reward_model"}


def foreign_hint(fields, path: str) -> str:
    """How to convert a row of another framework's format that was given where Samples are read ('' if none)."""
    fields = set(fields)
    if VERL_COLUMNS <= fields:
        return (f"; this is a verl / DocQA-RL row: convert the file with `longrl data import --format docqa-rl {path} "
                "--out FILE.jsonl` and train on that")
    if "prompt" in fields and "answers" in fields:
        return "; this looks like a TRL dataset row (`longrl data export --format trl`): longrl reads the Sample file it was made from"
    return ""


def sample_from_dict(row: Any, path: str, where: str) -> Sample:
    """Validate one decoded row; raise DataError naming `path`, `where` (line/row) and the field."""
    if not isinstance(row, dict):
        raise DataError(path, where, None, f"expected a JSON object, got {type(row).__name__}")
    unknown = set(row) - {"id", "task", "context", "question", "answers", "choices", "meta"}
    if unknown:
        raise DataError(path, where, sorted(unknown)[0], "unknown field (a Sample has id, task, context, question, "
                        "answers, choices, meta)" + foreign_hint(row.keys(), path))
    for name in ("id", "task", "context", "question"):
        value = row.get(name)
        if value is None:
            raise DataError(path, where, name, "missing")
        if not isinstance(value, str):
            raise DataError(path, where, name, f"expected a string, got {type(value).__name__}")
        if not value.strip():
            raise DataError(path, where, name, "empty")
    if row["task"] not in TASKS:
        raise DataError(path, where, "task", f"unknown task {row['task']!r}; known: {', '.join(TASKS.names())}")
    answers = row.get("answers")
    if answers is None:
        raise DataError(path, where, "answers", "missing")
    if isinstance(answers, str):
        answers = [answers]                      # one gold answer as a plain string
    if not isinstance(answers, list) or not answers:
        raise DataError(path, where, "answers", "expected a non-empty list of strings")
    if not all(isinstance(a, str) and a.strip() for a in answers):
        raise DataError(path, where, "answers", "every answer must be a non-empty string")
    choices = row.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
            raise DataError(path, where, "choices", f"expected a list of 2-{len(LETTERS)} strings or null")
        if not all(isinstance(c, str) and c.strip() for c in choices):
            raise DataError(path, where, "choices", "every choice must be a non-empty string")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise DataError(path, where, "meta", f"expected an object, got {type(meta).__name__}")
    return Sample(
        id=row["id"], task=row["task"], context=row["context"], question=row["question"],
        answers=list(answers), choices=list(choices) if choices is not None else None, meta=dict(meta),
    )
