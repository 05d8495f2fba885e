"""`choice`: multiple choice A-D; the right option must be checked against facts in the document.

    The sponsor of Bako is Rilu. ... The sponsor of Rilu is Tome.
    Q: Who is the sponsor of the sponsor of Bako? Options: Fesa (A), Tome (B), Rilu (C), Kemu (D).     A: B

The options are part of the question, each name followed by its letter (the letter is found the
way a value is: right after the name and "("), so the sample has no separate `choices` list; the
`choice` verifier reads the letter of the reply as for any multiple-choice item.
The wrong options are names the document also mentions as values of look-alike facts (decoys):
one hop too far (a fact about the answer), the same relation elsewhere, another relation; so an
option cannot be ruled out by its absence from the text. Every name is the subject of at most one
fact in a document (see `multihop`).
"""

from __future__ import annotations

import random

from longrl.data.schema import LETTERS
from longrl.data.synthetic.multihop import chain_question, chain_steps, fact
from longrl.data.synthetic.spec import TaskDraft
from longrl.data.synthetic.world import RELATIONS, distinct_names


def choice_names(hops: int, distractors: int) -> int:
    """Distinct names a draft uses: the chain, a value per decoy (at least 3) and a subject for all but the first."""
    decoys = max(distractors, 3)
    return hops + 1 + 2 * decoys - 1


def draft_choice(rng: random.Random, hops: int, distractors: int) -> TaskDraft:
    relation = rng.choice(RELATIONS)
    chain = distinct_names(rng, hops + 1)
    facts = [fact(relation, chain[i], chain[i + 1]) for i in range(hops)]
    used = set(chain)
    wrong: list[str] = []
    other_relations = [r for r in RELATIONS if r != relation]
    for d in range(max(distractors, 3)):
        value = distinct_names(rng, 1, used)[0]
        used.add(value)
        if d == 0:                    # one hop too far: a fact about the answer
            facts.append(fact(rng.choice(other_relations), chain[-1], value))
        else:                         # another subject, the same relation or another one
            subject = distinct_names(rng, 1, used)[0]
            used.add(subject)
            facts.append(fact(relation if d % 2 else rng.choice(other_relations), subject, value))
        wrong.append(value)
    options = rng.sample(wrong, 3) + [chain[-1]]
    rng.shuffle(options)
    letter = LETTERS[options.index(chain[-1])]
    listed = ", ".join(f"{name} ({LETTERS[i]})" for i, name in enumerate(options))
    trace = f"<think>{chain_steps(relation, chain)} {chain[-1]} ({letter}).</think>The correct answer is ({letter})."
    return TaskDraft(question=f"{chain_question(relation, chain[0], hops)} Options: {listed}.", answers=[letter],
                     facts=facts, trace=trace, topic="legal")
