"""`multihop`: follow a chain of one relation across the document; decoy chains look alike.

    The mentor of Bako is Rilu.  ...  The mentor of Rilu is Tome.
    Q: Who is the mentor of the mentor of Bako?          A: Tome

Decoys: chains of the same relation between other names, and facts about other names whose value
is a name of the true chain (so finding a chain name anywhere picks the wrong fact). Every name is
the subject of at most one fact in a document: a fact is found by its subject and the word "is"
that follows it (the two tokens before its value), which is what the tiny base model retrieves by.
The trace states the first hop in full and each further hop as "Rilu is Tome." (the name just
found, then its value), so every step starts from the token before it.
"""

from __future__ import annotations

import random

from longrl.data.synthetic.spec import TaskDraft
from longrl.data.synthetic.world import RELATIONS, distinct_names


def fact(relation: str, subject: str, value: str) -> str:
    return f"The {relation} of {subject} is {value}."


def chain_steps(relation: str, chain: list[str]) -> str:
    """The trace of a chain: "The mentor of Bako is Rilu. Rilu is Tome." (first hop in full, then name is value)."""
    return " ".join([fact(relation, chain[0], chain[1])] + [f"{a} is {b}." for a, b in zip(chain[1:], chain[2:])])


def chain_question(relation: str, start: str, hops: int) -> str:
    return "Who is " + " of ".join([f"the {relation}"] * hops) + f" of {start}?"


def multihop_names(hops: int, distractors: int) -> int:
    """Distinct names a draft uses: the chain, a new subject per even decoy, a new pair per odd one."""
    return hops + 1 + (distractors + 1) // 2 + 2 * (distractors // 2)


def draft_multihop(rng: random.Random, hops: int, distractors: int) -> TaskDraft:
    relation = rng.choice(RELATIONS)
    chain = distinct_names(rng, hops + 1)
    facts = [fact(relation, chain[i], chain[i + 1]) for i in range(hops)]
    used = set(chain)
    for d in range(distractors):
        if d % 2 == 0:   # another name's fact whose value is on the true chain
            subject = distinct_names(rng, 1, used)[0]
            facts.append(fact(rng.choice(RELATIONS), subject, rng.choice(chain)))
            used.add(subject)
        else:            # the same relation between names off the chain
            subject, value = distinct_names(rng, 2, used)
            facts.append(fact(relation, subject, value))
            used.update((subject, value))
    answer = chain[-1]
    trace = f"<think>{chain_steps(relation, chain)}</think>Therefore, the answer is {answer}."
    return TaskDraft(question=chain_question(relation, chain[0], hops), answers=[answer], facts=facts,
                     trace=trace, topic="general")
