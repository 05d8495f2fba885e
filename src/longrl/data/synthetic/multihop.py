"""`multihop`: follow a chain of one relation across the document; decoy chains look alike.

    The mentor of Bako is Rilu.  ...  The mentor of Rilu is Tome.
    Q: Who is the mentor of the mentor of Bako?          A: Tome

Decoys: chains of the same relation between other names, and facts of other relations about
the names on the true chain (so matching a name alone picks the wrong fact).
"""

from __future__ import annotations

import random

from longrl.data.synthetic.spec import TaskDraft
from longrl.data.synthetic.world import RELATIONS, distinct_names, unused_pair


def fact(relation: str, subject: str, value: str) -> str:
    return f"The {relation} of {subject} is {value}."


def chain_question(relation: str, start: str, hops: int) -> str:
    return "Who is " + " of ".join([f"the {relation}"] * hops) + f" of {start}?"


def multihop_names(hops: int, distractors: int) -> int:
    """Distinct names a draft uses: the chain, then 1 per decoy on a chain name (while such pairs last), else 2."""
    even, odd = (distractors + 1) // 2, distractors // 2
    on_chain = min(even, (len(RELATIONS) - 1) * hops)
    return hops + 1 + on_chain + 2 * (even - on_chain) + 2 * odd


def draft_multihop(rng: random.Random, hops: int, distractors: int) -> TaskDraft:
    relation = rng.choice(RELATIONS)
    chain = distinct_names(rng, hops + 1)
    facts = [fact(relation, chain[i], chain[i + 1]) for i in range(hops)]
    steps = list(facts)
    used = set(chain)
    taken = {(relation, name) for name in chain[:-1]}
    other_relations = [r for r in RELATIONS if r != relation]
    for d in range(distractors):
        pair = unused_pair(rng, other_relations, chain[:-1], taken) if d % 2 == 0 else None
        if pair is not None:  # a name on the true chain, another relation
            rel, subject = pair
            value = distinct_names(rng, 1, used)[0]
        else:  # the same relation between names off the chain
            rel, (subject, value) = relation, distinct_names(rng, 2, used)
        facts.append(fact(rel, subject, value))
        used.update((subject, value))
    answer = chain[-1]
    trace = "<think>" + " ".join(steps) + f"</think>Therefore, the answer is {answer}."
    return TaskDraft(question=chain_question(relation, chain[0], hops), answers=[answer], facts=facts,
                     trace=trace, topic="general")
