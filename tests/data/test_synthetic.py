"""Synthetic tasks: answers follow from the document, lengths hit the target, same seed = same bytes."""

import re

import numpy as np
import pytest

from longrl.data.io import write_samples
from longrl.data.prompt import encode_prompt
from longrl.data.synthetic import default_distractors, synthesize

RELATION_FACT = re.compile(r"The (\w+) of (\w+) is (\w+)\.")
FIGURE = re.compile(r"The (\w+) of (\w+) \((\d+) million dollars\) was reported\.")


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
    for metric, name, value in FIGURE.findall(document):
        assert (metric, name) not in figures, "ambiguous figure"
        figures[(metric, name)] = int(value)
    if question.startswith("How much higher"):
        metric, a, b = re.match(r"How much higher was the (\w+) of (\w+) than that of (\w+)", question).groups()
        return str(figures[(metric, a)] - figures[(metric, b)])
    metric, names = re.match(r"What was the total (\w+) of (.*), in million dollars", question).groups()
    return str(sum(figures[(metric, n)] for n in re.split(r", of | and of ", names)))


@pytest.fixture(scope="module")
def mixed(tokenizer):
    return synthesize(["docmath", "multihop", "choice"], n=30, length=600, seed=3, tokenizer=tokenizer)


def test_answers_follow_from_the_document(mixed):
    for s in mixed:
        if s.task == "multihop":
            assert [solve_chain(s.context, s.question)] == s.answers
        elif s.task == "choice":
            options = dict(re.findall(r"(\w+) \(([A-D])\)", s.question.split("Options:")[1]))
            assert len(options) == 4 and s.choices is None
            assert options[solve_chain(s.context, s.question.split(" Options:")[0])] == s.answers[0]
            assert all(name in s.context for name in options)  # wrong options are mentioned too
        else:
            assert [solve_docmath(s.context, s.question)] == s.answers


def test_traces_end_with_the_answer_sentence(mixed):
    for s in mixed:
        trace = s.meta["trace"]
        assert trace.startswith("<think>") and trace.count("</think>") == 1
        tail = trace.split("</think>")[1]
        expected = f"The correct answer is ({s.answers[0]})." if s.task == "choice" else f"Therefore, the answer is {s.answers[0]}."
        assert tail == expected


def test_trace_steps_follow_document_facts(mixed):
    for s in (x for x in mixed if x.task == "multihop"):
        steps = s.meta["trace"][len("<think>"):].split("</think>")[0]
        first, *rest = steps.split(". ")
        assert first + "." in s.context                       # the first hop quotes its fact
        facts = {subj: value for _, subj, value in RELATION_FACT.findall(s.context)}
        for step in rest:                                     # then "Rilu is Tome." per further hop
            subject, value = re.match(r"(\w+) is (\w+)\.?$", step).groups()
            assert facts[subject] == value


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


@pytest.mark.parametrize("length", [128, 160, 8192])
def test_every_family_hits_short_and_long_lengths(tokenizer, length):
    samples = synthesize(["docmath", "multihop", "choice", "lookup"], n=8, length=length, seed=9, tokenizer=tokenizer)
    lengths = np.array([len(encode_prompt(tokenizer, s).ids) for s in samples])
    assert lengths.min() >= 0.9 * length and lengths.max() <= 1.1 * length, lengths
    for s in samples:
        if s.task == "multihop":
            assert [solve_chain(s.context, s.question)] == s.answers
        elif s.task == "docmath":
            assert [solve_docmath(s.context, s.question)] == s.answers


@pytest.mark.slow
def test_length_131072_within_ten_percent(tokenizer):
    samples = synthesize(["docmath", "multihop", "choice"], n=3, length=131072, seed=0, tokenizer=tokenizer)
    for s in samples:
        n = len(encode_prompt(tokenizer, s).ids)
        assert 0.9 * 131072 <= n <= 1.1 * 131072
        assert s.meta["distractors"] == default_distractors(131072)
    chain = samples[1]
    assert [solve_chain(chain.context, chain.question)] == chain.answers   # hundreds of decoys, still unambiguous


def test_short_prompts_drop_default_decoys_but_not_requested_ones(tokenizer):
    from longrl.errors import UserError

    s = synthesize(["docmath"], n=1, length=128, seed=0, hops=4, tokenizer=tokenizer)[0]
    assert s.meta["distractors"] < default_distractors(128)
    assert len(encode_prompt(tokenizer, s).ids) <= 1.1 * 128
    with pytest.raises(UserError, match="cannot hold"):
        synthesize(["docmath"], n=1, length=128, seed=0, distractors=6, tokenizer=tokenizer)


def test_more_names_than_exist_is_a_clear_error(tokenizer):
    from longrl.data.synthetic.world import ALL_NAMES
    from longrl.errors import UserError

    with pytest.raises(UserError, match=f"places at most {len(ALL_NAMES) // 2 - 4} distractors at 4 hops"):
        synthesize(["lookup"], n=1, length=100_000, seed=0, distractors=len(ALL_NAMES), tokenizer=tokenizer)


def test_documents_beyond_the_single_token_names_use_the_larger_pool(tokenizer):
    from longrl.data.synthetic.world import NAMES

    s = synthesize(["lookup"], n=1, length=40_000, seed=0, tokenizer=tokenizer)[0]
    subjects = {subject for _, subject, _ in RELATION_FACT.findall(s.context)}
    assert len(subjects) > len(NAMES) // 2 and not subjects <= set(NAMES)


def test_every_name_is_the_subject_of_at_most_one_fact(tokenizer):
    """A fact is found by its subject and the word after it; decoys never share a subject."""
    for s in synthesize(["docmath", "multihop", "choice", "lookup"], n=24, length=1500, seed=11, tokenizer=tokenizer):
        subjects = [subj for _, subj, _ in RELATION_FACT.findall(s.context)] + [n for _, n, _ in FIGURE.findall(s.context)]
        assert subjects and len(subjects) == len(set(subjects)), s.id
        if s.task == "multihop":   # decoys mention chain names as values, so a name alone is not enough
            chain_names = re.findall(r"is (\w+)\.", s.meta["trace"])
            values = [v for _, _, v in RELATION_FACT.findall(s.context)]
            assert sum(values.count(n) for n in chain_names) > len(chain_names)


def test_docmath_figures_are_single_digits_after_a_parenthesis(tokenizer):
    for s in synthesize(["docmath"], n=10, length=600, seed=4, tokenizer=tokenizer):
        figures = FIGURE.findall(s.context)
        assert figures and all(1 <= int(v) <= 9 for _, _, v in figures)
        for name, value in re.findall(r"of (\w+) \((\d) million dollars\)", s.meta["trace"]):
            assert f"of {name} ({value} million dollars)" in s.context   # the trace quotes the document

def test_name_budget_of_each_family_matches_its_drafts():
    """names_needed is exact: a draft at the most decoys the budget allows works, one more runs out of names."""
    import random

    from longrl.data.synthetic import FAMILIES, max_distractors
    from longrl.errors import UserError

    for name in FAMILIES.names():
        for hops in (1, 3):
            most = max_distractors(name, hops)
            for seed in range(2):
                FAMILIES.get(name)(random.Random(seed), hops, most)
            with pytest.raises(UserError, match="distinct names"):  # the world's name pool is exhausted
                FAMILIES.get(name)(random.Random(0), hops, most + 1)


def test_the_longest_documents_cap_default_decoys_at_the_name_budget():
    """Near a million tokens the default decoy count would need more names than the world has: it is capped."""
    from longrl.data.synthetic import DEFAULT_HOPS, MAX_LENGTH, max_distractors, plan_knobs

    for task in ("choice", "multihop", "docmath", "lookup"):
        most = max_distractors(task, DEFAULT_HOPS[task])
        assert plan_knobs(task, MAX_LENGTH, None, None) == (DEFAULT_HOPS[task], most) and most < default_distractors(MAX_LENGTH)
        assert plan_knobs(task, 131072, None, None)[1] == default_distractors(131072)   # 128K: uncapped


@pytest.mark.parametrize(("knobs", "message"), [
    ({"length": 100_000_000}, r"length 100000000 is out of range: use 32\.\.1048576"),
    ({"length": 16}, "length 16 is out of range"),
    ({"hops": -3}, "hops -3 must be at least 1"),
    ({"distractors": -3}, "distractors -3 must be 0 or more"),
    ({"hops": 10000}, "'docmath' cannot chain 10000 hops: its world has 4,900 names"),
    ({"hops": 1000}, "'docmath': a 512-token prompt cannot hold 1000 hops and 0 distractors"),
    ({"distractors": 10000}, r"'docmath' places at most \d+ distractors at 2 hops"),
])
def test_impossible_knobs_are_refused_before_any_work(knobs, message):
    from longrl.errors import UserError

    args = {"length": 512, "hops": None, "distractors": None, **knobs}
    with pytest.raises(UserError, match=message):
        synthesize(["docmath"], n=1, seed=0, tokenizer=object(), **args)  # refused before the tokenizer is used
