"""`lookup`: several independent fact look-ups in one question (dense retrieval practice).

    The mentor of Gire is Tamo. ... The rival of Kudi is Febe. ...
    Q: Name, in this order, the mentor of Gire, the rival of Kudi and the partner of Nada.
    A: Tamo, Febe, Zobu

Each looked-up value is a retrieval target, so a model learns to find facts from far fewer
documents than one-question families give it. Used to make the tiny base model; `hops` is the
number of look-ups.
"""

from __future__ import annotations

import random

from longrl.data.synthetic.multihop import fact
from longrl.data.synthetic.spec import TaskDraft
from longrl.data.synthetic.world import RELATIONS, distinct_names, unused_pair


def draft_lookup(rng: random.Random, hops: int, distractors: int) -> TaskDraft:
    names = distinct_names(rng, 2 * (hops + distractors) + 2)
    subjects, values = names[: len(names) // 2], names[len(names) // 2:]
    taken: set[tuple[str, str]] = set()
    facts, asked = [], []
    for i in range(hops + distractors):
        relation, subject = unused_pair(rng, RELATIONS, subjects, taken)
        facts.append(fact(relation, subject, values[i]))
        if i < hops:
            asked.append((relation, subject, values[i]))
    parts = [f"the {r} of {s}" for r, s, _ in asked]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" and {parts[-1]}"
    answer = ", ".join(v for _, _, v in asked)
    steps = " ".join(fact(r, s, v) for r, s, v in asked)
    return TaskDraft(question=f"Name, in this order, {listed}.", answers=[answer], facts=facts,
                     trace=f"<think>{steps}</think>Therefore, the answer is {answer}.", topic="general")
