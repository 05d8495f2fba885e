"""`docmath`: figures scattered through a report; the question needs arithmetic over them.

    The revenue of Bako (7 million dollars) was reported.  ...  The revenue of Rilu (5 million dollars) was reported.
    Q: What was the total revenue of Bako and of Rilu, in million dollars?     A: 12

`hops` is the number of figures combined (2 = a sum or a difference, 3+ = a sum). Figures are 1-9,
right after the "(" that follows their company's name (the tiny base model finds a figure the way it
finds a name after "is"); the trace repeats the question's "and of" / "that of" before each further
name, so it can be copied from the question the same way. Decoys: the same metric for other names,
other metrics of other names; every name has one figure in a document.
"""

from __future__ import annotations

import random

from longrl.data.synthetic.spec import TaskDraft
from longrl.data.synthetic.world import METRICS, distinct_names, joined


def figure(metric: str, name: str, value: int) -> str:
    return f"The {metric} of {name} ({value} million dollars) was reported."


def listed(names: list[str]) -> str:
    """"of A, of B and of C": each name after "of", so the trace can take them from the question in order."""
    return joined([f"of {n}" for n in names])


def docmath_names(hops: int, distractors: int) -> int:
    """Distinct names a draft uses: the figures' names, then one new name per decoy (one figure per name)."""
    return max(hops, 2) + distractors


def draft_docmath(rng: random.Random, hops: int, distractors: int) -> TaskDraft:
    hops = max(hops, 2)
    metric = rng.choice(METRICS)
    names = distinct_names(rng, hops)
    subtract = hops == 2 and rng.random() < 0.5
    if subtract:
        values = sorted(rng.sample(range(1, 10), 2), reverse=True)
        answer = values[0] - values[1]
        question = f"How much higher was the {metric} of {names[0]} than that of {names[1]}, in million dollars?"
        steps = (f"The {metric} of {names[0]} ({values[0]} million dollars) than that of {names[1]} "
                 f"({values[1]} million dollars).")
        arithmetic = f"{values[0]}-{values[1]}={answer}."
    else:
        values = [rng.randint(1, 9) for _ in names]
        answer = sum(values)
        question = f"What was the total {metric} {listed(names)}, in million dollars?"
        quoted = [f"of {n} ({v} million dollars)" for n, v in zip(names, values)]
        steps = f"The {metric} {joined(quoted)}."
        arithmetic = "+".join(map(str, values)) + f"={answer}."
    facts = [figure(metric, n, v) for n, v in zip(names, values)]
    other_metrics = [m for m in METRICS if m != metric]
    used = set(names)
    for d in range(distractors):
        other = distinct_names(rng, 1, used)[0]
        used.add(other)
        facts.append(figure(metric if d % 2 == 0 else rng.choice(other_metrics), other, rng.randint(1, 9)))
    trace = f"<think>{steps} {arithmetic}</think>Therefore, the answer is {answer}."
    return TaskDraft(question=question, answers=[str(answer)], facts=facts, trace=trace, topic="report")
