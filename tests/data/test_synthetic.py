"""Synthetic tasks: answers follow from the document, lengths hit the target, same seed = same bytes."""

import re

import numpy as np
import pytest

from longrl.data.io import write_samples
from longrl.data.prompt import encode_prompt
from longrl.data.schema import LETTERS
from longrl.data.synthetic import default_distractors, synthesize

RELATION_FACT = re.compile(r"The (\w+) of (\w+) is (\w+)\.")
FIGURE = re.compile(r"In (\d{4}), the (\w+) of (\w+) was (\d+) million dollars\.")


def solve_chain(document: str, question: str) -> str:
    """Follow the question's relation chain through the document's facts (the intended reasoning)."""
    relation, *rest = re.match(r"Who is the (\w+) of (.*)\?", question).groups()
    hops = 1 + rest[0].count(f"the {relation} of ")
    start = rest[0].split(" of ")[-1]
    facts = {}
    for rel, subject, value in RELATION_FACT.findall(document):
        assert (rel, subject) not in facts or facts[(rel, subject)] == value, "ambiguous fact"
        facts[(rel, subject)] = value
    node = start
    for _ in range(hops):
        node = facts[(relation, node)]
    return node


def solve_docmath(document: str, question: str) -> str:
    figures = {}
    for year, metric, name, value in FIGURE.findall(document):
        assert (year, metric, name) not in figures, "ambiguous figure"
        figures[(year, metric, name)] = int(value)
    year = re.search(r"in (\d{4}),", question).group(1)
    if question.startswith("How much higher"):
        metric, a, b = re.match(r"How much higher was the (\w+) of (\w+) than the \w+ of (\w+)", question).groups()
        return str(figures[(year, metric, a)] - figures[(year, metric, b)])
    metric, names = re.match(r"What was the total (\w+) of (.*) in \d{4}", question).groups()
    return str(sum(figures[(year, metric, n)] for n in re.split(r", | and ", names)))


@pytest.fixture(scope="module")
def mixed(tokenizer):
    return synthesize(["docmath", "multihop", "choice"], n=30, length=600, seed=3, tokenizer=tokenizer)


def test_answers_follow_from_the_document(mixed):
    for s in mixed:
        if s.task == "multihop":
            assert [solve_chain(s.context, s.question)] == s.answers
        elif s.task == "choice":
            assert s.choices.count(solve_chain(s.context, s.question)) == 1
            assert s.answers == [LETTERS[s.choices.index(solve_chain(s.context, s.question))]]
            assert all(c in s.context for c in s.choices)  # wrong options are mentioned too
        else:
            assert [solve_docmath(s.context, s.question)] == s.answers


def test_traces_end_with_the_answer_sentence(mixed):
    for s in mixed:
        trace = s.meta["trace"]
        assert trace.startswith("<think>") and trace.count("</think>") == 1
        tail = trace.split("</think>")[1]
        expected = f"The correct answer is ({s.answers[0]})." if s.task == "choice" else f"Therefore, the answer is {s.answers[0]}."
        assert tail == expected


def test_trace_steps_quote_document_facts(mixed):
    for s in (x for x in mixed if x.task == "multihop"):
        steps = s.meta["trace"][len("<think>"):].split("</think>")[0]
        for fact in RELATION_FACT.findall(steps):
            assert "The {} of {} is {}.".format(*fact) in s.context


def test_lengths_within_ten_percent_at_2000(tokenizer):
    samples = synthesize(["docmath", "multihop", "choice"], n=30, length=2000, seed=0, tokenizer=tokenizer)
    lengths = np.array([len(encode_prompt(tokenizer, s).ids) for s in samples])
    assert lengths.min() >= 1800 and lengths.max() <= 2200, np.percentile(lengths, [0, 50, 100])


def test_same_seed_same_bytes_other_seed_differs(tmp_path, tokenizer):
    def make(seed, name):
        write_samples(tmp_path / name, synthesize(["multihop", "docmath"], n=8, length=300, seed=seed, tokenizer=tokenizer))
        return (tmp_path / name).read_bytes()

    assert make(1, "a.jsonl") == make(1, "b.jsonl")
    assert make(1, "a.jsonl") != make(2, "c.jsonl")


def test_sample_i_independent_of_n(tokenizer):
    few = synthesize(["multihop"], n=2, length=300, seed=4, tokenizer=tokenizer)
    many = synthesize(["multihop"], n=5, length=300, seed=4, tokenizer=tokenizer)
    assert few == many[:2]


def test_hops_and_distractors_controls(tokenizer):
    s = synthesize(["multihop"], n=1, length=400, seed=0, hops=4, distractors=9, tokenizer=tokenizer)[0]
    assert s.question.count("the ") == 4 and s.meta["hops"] == 4
    assert len(RELATION_FACT.findall(s.context)) == 4 + 9
    assert solve_chain(s.context, s.question) == s.answers[0]
    m = synthesize(["docmath"], n=1, length=400, seed=0, hops=3, distractors=0, tokenizer=tokenizer)[0]
    assert len(FIGURE.findall(m.context)) == 3 and " and " in m.question


def test_longer_documents_carry_more_decoys(tokenizer):
    assert default_distractors(2048) > default_distractors(512) > default_distractors(128)
    short = synthesize(["multihop"], n=1, length=200, seed=0, tokenizer=tokenizer)[0]
    long = synthesize(["multihop"], n=1, length=2000, seed=0, tokenizer=tokenizer)[0]
    assert len(RELATION_FACT.findall(long.context)) > len(RELATION_FACT.findall(short.context))


def test_lookup_answers_each_fact_in_order(tokenizer):
    for s in synthesize(["lookup"], n=6, length=300, seed=2, tokenizer=tokenizer):
        facts = {(r, subj): v for r, subj, v in RELATION_FACT.findall(s.context)}
        asked = re.findall(r"the (\w+) of (\w+)", s.question)
        assert len(asked) == s.meta["hops"] == 4
        assert s.answers == [", ".join(facts[pair] for pair in asked)]
        assert s.meta["trace"].endswith(f"Therefore, the answer is {s.answers[0]}.")


def test_name_budget_of_each_family_matches_its_drafts():
    """names_needed is exact: a draft at the most decoys the budget allows works, one more runs out of names."""
    import random

    from longrl.data.synthetic import FAMILIES, max_distractors

    for name in FAMILIES.names():
        for hops in (1, 2, 3, 6):
            most = max_distractors(name, hops)
            for seed in range(3):
                FAMILIES.get(name)(random.Random(seed), hops, most)
            with pytest.raises(ValueError):  # the world's name pool is exhausted
                FAMILIES.get(name)(random.Random(0), hops, most + 1)


def test_long_documents_cap_default_decoys_at_the_name_budget(tokenizer):
    """Past ~15K tokens the default decoy count would need more names than the world has: it is capped."""
    from longrl.data.synthetic import DEFAULT_HOPS, max_distractors

    samples = synthesize(["choice", "multihop"], n=2, length=16400, seed=0, tokenizer=tokenizer)
    for s in samples:
        assert s.meta["distractors"] == max_distractors(s.task, DEFAULT_HOPS[s.task]) < default_distractors(16400)
    assert solve_chain(samples[1].context, samples[1].question) == samples[1].answers[0]
    assert default_distractors(14_999) <= max_distractors("lookup", DEFAULT_HOPS["lookup"])  # shorter: bytes unchanged


@pytest.mark.parametrize(("knobs", "message"), [
    ({"length": 100_000_000}, r"length 100000000 is out of range: use 32\.\.1048576"),
    ({"length": 16}, "length 16 is out of range"),
    ({"hops": -3}, "hops -3 must be at least 1"),
    ({"distractors": -3}, "distractors -3 must be 0 or more"),
    ({"hops": 1000}, "'docmath' cannot chain 1000 hops: its world has 160 names"),
    ({"distractors": 1000}, r"'docmath' places at most \d+ distractors at 2 hops"),
])
def test_impossible_knobs_are_refused_before_any_work(knobs, message):
    from longrl.errors import UserError

    args = {"length": 512, "hops": None, "distractors": None, **knobs}
    with pytest.raises(UserError, match=message):
        synthesize(["docmath"], n=1, seed=0, tokenizer=object(), **args)  # refused before the tokenizer is used
