"""What a task family drafts before its document is filled to length."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TaskDraft:
    question: str
    answers: list[str]
    facts: list[str]             # sentences placed in the document (true and decoy)
    trace: str                   # demonstration: <think>...</think> then the answer sentence
    topic: str                   # filler register: general | report | legal
