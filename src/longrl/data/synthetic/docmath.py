"""`docmath`: figures scattered through a report; the question needs arithmetic over them.

    The revenue of Bako (7 million dollars) was reported.  ...  The revenue of Rilu (5 million dollars) was reported.
    Q: What was the total revenue of Bako and Rilu, in million dollars?     A: 12

`hops` is the number of figures combined (2 = a sum or a difference, 3+ = a sum). Figures are 1-9
(a number right after the "(" that follows its company's name, so the tiny base model finds it
the way it finds a name after "is"). Decoys: the same metric for other names, other metrics of
other names; every name has one figure in a document.
"""

from __future__ import annotations

import random

from longrl.data.synthetic.spec import TaskDraft
from longrl.data.synthetic.world import METRICS, distinct_names


def figure(metric: str, name: str, value: int) -> str:
    return f"The {metric} of {name} ({value} million dollars) was reported."


def quote(metric: str, name: str, value: int) -> str:
    """The trace's step: the figure as the document states it, up to the parenthesis."""
    return f"The {metric} of {name} ({value} million dollars)."


def draft_docmath(rng: random.Random, hops: int, distractors: int) -> TaskDraft:
    hops = max(hops, 2)
    metric = rng.choice(METRICS)
    names = distinct_names(rng, hops)
    subtract = hops == 2 and rng.random() < 0.5
    if subtract:
        values = sorted(rng.sample(range(1, 10), 2), reverse=True)
        answer = values[0] - values[1]
        question = f"How much higher was the {metric} of {names[0]} than the {metric} of {names[1]}, in million dollars?"
        arithmetic = f"{values[0]} - {values[1]} = {answer}."
    else:
        values = [rng.randint(1, 9) for _ in names]
        answer = sum(values)
        joined = ", ".join(names[:-1]) + f" and {names[-1]}"
        question = f"What was the total {metric} of {joined}, in million dollars?"
        arithmetic = " + ".join(map(str, values)) + f" = {answer}."
    facts = [figure(metric, n, v) for n, v in zip(names, values)]
    steps = [quote(metric, n, v) for n, v in zip(names, values)]
    other_metrics = [m for m in METRICS if m != metric]
    used = set(names)
    for d in range(distractors):
        other = distinct_names(rng, 1, used)[0]
        used.add(other)
        facts.append(figure(metric if d % 2 == 0 else rng.choice(other_metrics), other, rng.randint(1, 9)))
    trace = "<think>" + " ".join(steps) + f" {arithmetic}</think>Therefore, the answer is {answer}."
    return TaskDraft(question=question, answers=[str(answer)], facts=facts, trace=trace, topic="report")
