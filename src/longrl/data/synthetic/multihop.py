"""`multihop`: follow a chain of one relation across the document; decoy chains look alike.

    The mentor of Bako is Rilu.  ...  The mentor of Rilu is Tome.
    Q: Who is the mentor of the mentor of Bako?          A: Tome

Decoys: chains of the same relation between other names, and facts of other relations about
the names on the true chain (so matching a name alone picks the wrong fact).
"""

from __future__ import annotations

import random

from longrl.data.synthetic.world import RELATIONS, distinct_names
from longrl.data.synthetic.spec import TaskDraft


def fact(relation: str, subject: str, value: str) -> str:
    return f"The {relation} of {subject} is {value}."


def chain_question(relation: str, start: str, hops: int) -> str:
    return "Who is " + " of ".join([f"the {relation}"] * hops) + f" of {start}?"


def draft_multihop(rng: random.Random, hops: int, distractors: int) -> TaskDraft:
    relation = rng.choice(RELATIONS)
    chain = distinct_names(rng, hops + 1)
    facts = [fact(relation, chain[i], chain[i + 1]) for i in range(hops)]
    steps = list(facts)
    used = set(chain)
    other_relations = [r for r in RELATIONS if r != relation]
    for d in range(distractors):
        if d % 2 == 0:  # a name on the true chain, another relation
            subject, value = rng.choice(chain[:-1]), distinct_names(rng, 1, used)[0]
            facts.append(fact(rng.choice(other_relations), subject, value))
        else:  # the same relation between names off the chain
            subject, value = distinct_names(rng, 2, used)
            facts.append(fact(relation, subject, value))
        used.update((subject, value))
    answer = chain[-1]
    trace = "<think>" + " ".join(steps) + f"</think>Therefore, the answer is {answer}."
    return TaskDraft(question=chain_question(relation, chain[0], hops), answers=[answer], facts=facts,
                     trace=trace, topic="general")
