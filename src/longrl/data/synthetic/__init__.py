"""Synthetic long-document reasoning tasks: the embedded default's data.

    samples = synthesize(["docmath", "multihop", "choice"], n=300, length=2000, seed=0)

Three families mirror DocQA-RL-1.6K: `docmath` (arithmetic over figures in a report),
`multihop` (entity chains with look-alike decoy chains), `choice` (A-D options checked
against the document). Sample i of a family depends only on (seed, family, i, length, hops,
distractors), so the same arguments give byte-identical files, and longer documents carry more
decoys (harder, in a way a model can learn). Every sample has its gold answers and a
programmatic reasoning trace in `meta.trace`, usable as an SFT demonstration.

CLI: `longrl data synth --tasks docmath,multihop,choice --n N --length TOKENS --seed S --out FILE.jsonl`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from longrl.data.prompt import render_chat, user_message
from longrl.data.schema import Sample
from longrl.data.synthetic.choice import draft_choice
from longrl.data.synthetic.docmath import draft_docmath
from longrl.data.synthetic.lookup import draft_lookup
from longrl.data.synthetic.multihop import draft_multihop
from longrl.data.synthetic.spec import TaskDraft
from longrl.data.synthetic.world import DocumentPlan, build_document
from longrl.data.tokens import PieceTokenizer
from longrl.errors import UserError
from longrl.registry import Registry

GENERATOR_VERSION = "longrl-synthetic/2"

Drafter = Callable[[random.Random, int, int], TaskDraft]
FAMILIES: Registry[Drafter] = Registry("synthetic task")
FAMILIES.add("docmath", draft_docmath)
FAMILIES.add("multihop", draft_multihop)
FAMILIES.add("choice", draft_choice)
FAMILIES.add("lookup", draft_lookup)
DEFAULT_HOPS = {"docmath": 2, "multihop": 2, "choice": 1, "lookup": 4}


def default_distractors(length: int) -> int:
    """Decoy facts grow with document length: 2 at 128 tokens, 7 at 1K, 12 at 2K, 102 at 20K."""
    return 2 + length // 200


def synthesize(
    tasks: list[str],
    n: int,
    length: int,
    seed: int = 0,
    hops: int | None = None,
    distractors: int | None = None,
    tokenizer=None,
    progress: Callable[[int], None] | None = None,
) -> list[Sample]:
    """`n` samples, families round-robin, prompts of about `length` tokens (chat template included).

    `tokenizer` counts the tokens: a Hugging Face tokenizer, or a `PieceTokenizer` around one
    (callers that synthesize item by item pass the same one each time, so its memo carries over).
    """
    if tokenizer is None:
        from longrl.models.tokenizer import load_default_tokenizer

        tokenizer = load_default_tokenizer()
    tokenizer = tokenizer if isinstance(tokenizer, PieceTokenizer) else PieceTokenizer(tokenizer)
    drafters = [(name, FAMILIES.get(name)) for name in tasks]
    counters = {name: 0 for name in tasks}
    samples = []
    for i in range(n):
        name, drafter = drafters[i % len(drafters)]
        index = counters[name]
        counters[name] += 1
        samples.append(make_sample(name, drafter, index, length, seed, hops, distractors, tokenizer))
        if progress:
            progress(i + 1)
    return samples


def make_sample(name: str, drafter: Drafter, index: int, length: int, seed: int, hops: int | None,
                distractors: int | None, tokenizer) -> Sample:
    """Sample `index` of family `name`: a draft, then its document filled to `length` prompt tokens.

    With the default decoy count, a prompt too short for the facts and the question loses decoys
    until they fit within +10%; an explicit `distractors` (or hops) that cannot fit is a UserError.
    """
    key = f"{GENERATOR_VERSION}:{seed}:{name}:{length}:{hops}:{distractors}:{index}"
    h = hops if hops is not None else DEFAULT_HOPS.get(name, 2)
    d = distractors if distractors is not None else default_distractors(length)
    count = tokenizer.count   # exact; the document is filled with `estimate`, then the whole prompt counted
    while True:
        rng = random.Random(key)
        draft = drafter(rng, h, d)
        sample = Sample(id=f"{name}-s{seed}-L{length}-{index:06d}", task=name, context="", question=draft.question,
                        answers=draft.answers, choices=draft.choices,
                        meta={"trace": draft.trace, "length": length, "hops": h, "distractors": d,
                              "generator": GENERATOR_VERSION})
        overhead = tokenizer.estimate(render_chat(tokenizer, user_message(sample, "")))
        floor = overhead + sum(tokenizer.estimate(" " + f) for f in draft.facts)
        if floor <= length * 1.1:
            break
        if distractors is not None or d == 0:
            raise UserError(f"{name}: a {length}-token prompt cannot hold {h} hops and {d} distractors (the question "
                            f"and the facts alone take ~{floor} tokens); ask for a longer --length or fewer of them")
        d -= 1
    target_doc = max(length - overhead, 1)
    plan = DocumentPlan(draft.facts, draft.topic)
    state = rng.getstate()
    for _ in range(3):  # per-sentence counts are close; one correction absorbs paragraph-break effects
        rng.setstate(state)
        document = build_document(rng, plan, target_doc, tokenizer.estimate)
        total = count(render_chat(tokenizer, user_message(sample, document)))
        if abs(total - length) <= max(2, length // 50):
            break
        target_doc = max(target_doc + length - total, 1)
    return Sample(id=sample.id, task=name, context=document, question=draft.question, answers=draft.answers,
                  choices=draft.choices, meta=sample.meta)
