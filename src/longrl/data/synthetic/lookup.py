"""`lookup`: several independent fact look-ups in one question (dense retrieval practice).

    The mentor of Gire is Tamo. ... The rival of Kudi is Febe. ...
    Q: Name, in this order, the mentor of Gire, the rival of Kudi and the partner of Nada.
    A: Tamo, Febe, Zobu

Each looked-up value is a retrieval target, so a model learns to find facts from far fewer
documents than one-question families give it. Every fact has its own subject, so a name alone
finds its fact (the easiest retrieval); the other families add look-alike decoys on top. Used to
make the tiny base model; `hops` is the number of look-ups.
"""

from __future__ import annotations

import random

from longrl.data.synthetic.multihop import fact
from longrl.data.synthetic.spec import TaskDraft
from longrl.data.synthetic.world import RELATIONS, distinct_names, joined


def lookup_names(hops: int, distractors: int) -> int:
    """Distinct names a draft uses: a subject and a value per fact."""
    return 2 * (hops + distractors)


def draft_lookup(rng: random.Random, hops: int, distractors: int) -> TaskDraft:
    count = hops + distractors
    names = distinct_names(rng, 2 * count)
    subjects, values = names[:count], names[count:]
    facts, asked = [], []
    for i in range(count):
        relation = rng.choice(RELATIONS)
        facts.append(fact(relation, subjects[i], values[i]))
        if i < hops:
            asked.append((relation, subjects[i], values[i]))
    listed = joined([f"the {r} of {s}" for r, s, _ in asked])
    answer = ", ".join(v for _, _, v in asked)
    steps = " ".join(fact(r, s, v) for r, s, v in asked)
    return TaskDraft(question=f"Name, in this order, {listed}.", answers=[answer], facts=facts,
                     trace=f"<think>{steps}</think>Therefore, the answer is {answer}.", topic="general")
