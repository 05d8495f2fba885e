"""`docmath`: numbers scattered through a report; the question needs arithmetic over them.

    In 2019, the revenue of Bako was 45 million dollars.  ...  In 2019, the revenue of Rilu was 37 million dollars.
    Q: What was the total revenue of Bako and Rilu in 2019, in million dollars?     A: 82

`hops` is the number of figures combined (2 = a sum or a difference, 3+ = a sum). Decoys: the same
metric for other names or years, other metrics of the same names.
"""

from __future__ import annotations

import random

from longrl.data.synthetic.spec import TaskDraft
from longrl.data.synthetic.world import METRICS, YEARS, distinct_names, unused_pair


def figure(metric: str, name: str, year: str, value: int) -> str:
    return f"In {year}, the {metric} of {name} was {value} million dollars."


def docmath_names(hops: int, distractors: int) -> int:
    """Distinct names a draft uses: the figures' names plus decoys that cannot reuse them (see below)."""
    hops = max(hops, 2)
    other_year, other_metric, other_name = (distractors + 2) // 3, (distractors + 1) // 3, distractors // 3
    return (hops + max(0, other_year - (len(YEARS) - 1) * hops) + max(0, other_metric - (len(METRICS) - 1) * hops)
            + other_name)


def draft_docmath(rng: random.Random, hops: int, distractors: int) -> TaskDraft:
    hops = max(hops, 2)
    metric, year = rng.choice(METRICS), rng.choice(YEARS)
    names = distinct_names(rng, hops)
    values = [rng.randint(10, 99) for _ in names]
    subtract = hops == 2 and rng.random() < 0.5
    if subtract:
        values.sort(reverse=True)
        if values[0] == values[1]:
            values[0] += 1
        answer = values[0] - values[1]
        question = f"How much higher was the {metric} of {names[0]} than the {metric} of {names[1]} in {year}, in million dollars?"
        arithmetic = f"{values[0]} - {values[1]} = {answer}."
    else:
        answer = sum(values)
        joined = ", ".join(names[:-1]) + f" and {names[-1]}"
        question = f"What was the total {metric} of {joined} in {year}, in million dollars?"
        arithmetic = " + ".join(map(str, values)) + f" = {answer}."
    facts = [figure(metric, n, year, v) for n, v in zip(names, values)]
    steps = [f"The {metric} of {n} in {year} was {v}." for n, v in zip(names, values)]
    other_years = [y for y in YEARS if y != year]
    other_metrics = [m for m in METRICS if m != metric]
    used = set(names)
    taken_years: set[tuple[str, str]] = set()    # (year, name) with the asked metric
    taken_metrics: set[tuple[str, str]] = set()  # (metric, name) in the asked year
    for d in range(distractors):
        kind = d % 3
        pair = None
        if kind == 0:    # same name, another year
            pair = unused_pair(rng, other_years, names, taken_years)
            if pair:
                facts.append(figure(metric, pair[1], pair[0], rng.randint(10, 99)))
        elif kind == 1:  # same name, another metric
            pair = unused_pair(rng, other_metrics, names, taken_metrics)
            if pair:
                facts.append(figure(pair[0], pair[1], year, rng.randint(10, 99)))
        if pair is None:  # another name, same metric and year
            other = distinct_names(rng, 1, used)[0]
            used.add(other)
            facts.append(figure(metric, other, year, rng.randint(10, 99)))
    trace = "<think>" + " ".join(steps) + f" {arithmetic}</think>Therefore, the answer is {answer}."
    return TaskDraft(question=question, answers=[str(answer)], facts=facts, trace=trace, topic="report")
