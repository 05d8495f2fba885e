"""Task names a Sample may carry, and the verifier that scores each.

A task is a kind of question with one way of checking its answer. New tasks plug in with
`TASKS.add("legal_qa", TaskSpec(verifier="qa", description="..."))` (the verifier must be
registered in `longrl.rewards.verifiers`).
"""

from __future__ import annotations

from dataclasses import dataclass

from longrl.registry import Registry


@dataclass(frozen=True)
class TaskSpec:
    verifier: str          # name in longrl.rewards.verifiers.VERIFIERS
    description: str
    multiple_choice: bool = False  # prompt asks for "The correct answer is (X)"


TASKS: Registry[TaskSpec] = Registry("task")
TASKS.add("docmath", TaskSpec("numeric", "arithmetic over numbers found in a report-like document"))
TASKS.add("multihop", TaskSpec("qa", "free-text answer reached through a chain of facts across passages"))
TASKS.add("qa", TaskSpec("qa", "free-text question answering over a document (LongBench, Frames)"))
TASKS.add("lookup", TaskSpec("qa", "several fact look-ups answered in order (synthetic practice for retrieval)"))
TASKS.add("choice", TaskSpec("choice", "multiple choice A-D checked against facts in the document", True))
