"""`choice`: multiple choice A-D; the right option must be checked against facts in the document.

    The sponsor of Bako is Rilu. ... The sponsor of Rilu is Tome.
    Q: Who is the sponsor of the sponsor of Bako?  (A) Fesa (B) Tome (C) Rilu (D) Kemu     A: B

The wrong options are names the document also mentions in look-alike facts (decoys), so an
option cannot be ruled out by its absence from the text.
"""

from __future__ import annotations

import random

from longrl.data.schema import LETTERS
from longrl.data.synthetic.multihop import chain_question, fact
from longrl.data.synthetic.spec import TaskDraft
from longrl.data.synthetic.world import RELATIONS, distinct_names, unused_pair


def choice_names(hops: int, distractors: int) -> int:
    """Distinct names a draft uses: the chain, one value per decoy and a subject for decoys off the chain."""
    decoys = max(distractors, 3)
    on_chain = min((decoys + 1) // 2, (len(RELATIONS) - 1) * hops)
    return hops + 1 + decoys + (decoys - on_chain)


def draft_choice(rng: random.Random, hops: int, distractors: int) -> TaskDraft:
    relation = rng.choice(RELATIONS)
    chain = distinct_names(rng, hops + 1)
    facts = [fact(relation, chain[i], chain[i + 1]) for i in range(hops)]
    steps = list(facts)
    used = set(chain)
    wrong: list[str] = []
    taken = {(relation, name) for name in chain[:-1]}
    other_relations = [r for r in RELATIONS if r != relation]
    for d in range(max(distractors, 3)):
        value = distinct_names(rng, 1, used)[0]
        used.add(value)
        pair = unused_pair(rng, other_relations, chain[:-1], taken) if d % 2 == 0 else None
        if pair is not None:  # a fact about a chain name, another relation: its value is a tempting option
            facts.append(fact(pair[0], pair[1], value))
        else:                 # the same relation elsewhere
            subject = distinct_names(rng, 1, used)[0]
            used.add(subject)
            facts.append(fact(relation, subject, value))
        wrong.append(value)
    options = rng.sample(wrong, 3) + [chain[-1]]
    rng.shuffle(options)
    letter = LETTERS[options.index(chain[-1])]
    trace = ("<think>" + " ".join(steps) + f" {chain[-1]} is option ({letter}).</think>"
             f"The correct answer is ({letter}).")
    return TaskDraft(question=chain_question(relation, chain[0], hops), answers=[letter], facts=facts,
                     trace=trace, topic="legal", choices=options)
