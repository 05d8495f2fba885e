"""Synthetic long-document reasoning tasks: the embedded default's data.

    samples = synthesize(["docmath", "multihop", "choice"], n=300, length=2000, seed=0, tokenizer=tokenizer)

Three families mirror DocQA-RL-1.6K: `docmath` (arithmetic over figures in a report),
`multihop` (entity chains with look-alike decoy chains), `choice` (A-D options checked
against the document). Sample i of a family depends only on (seed, family, i, length, hops,
distractors), so the same arguments give byte-identical files, and longer documents carry more
decoys (harder, in a way a model can learn) up to what the world's 4,900 names allow. Every sample has its gold answers and a
programmatic reasoning trace in `meta.trace`, usable as an SFT demonstration.

CLI: `longrl data synth --tasks docmath,multihop,choice --n N --length TOKENS --seed S --out FILE.jsonl`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from longrl.data.prompt import render_chat, user_message
from longrl.data.schema import Sample
from longrl.data.synthetic.choice import choice_names, draft_choice
from longrl.data.synthetic.docmath import docmath_names, draft_docmath
from longrl.data.synthetic.lookup import draft_lookup, lookup_names
from longrl.data.synthetic.multihop import draft_multihop, multihop_names
from longrl.data.synthetic.spec import TaskDraft
from longrl.data.synthetic.world import ALL_NAMES, DocumentPlan, build_document
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
# family -> names_needed(hops, distractors): distinct entity names one draft uses (the world has len(ALL_NAMES)).
NAMES_NEEDED: dict[str, Callable[[int, int], int]] = {
    "docmath": docmath_names, "multihop": multihop_names, "choice": choice_names, "lookup": lookup_names}
MAX_LENGTH = 1 << 20  # prompt tokens: far past any model's window, and minutes of generation per item
MIN_FACT_TOKENS = 6   # the shortest fact sentence ("The cost of Bako (7 million dollars) ..." is longer), for early refusals


def default_distractors(length: int) -> int:
    """Decoy facts grow with document length: 2 at 128 tokens, 7 at 1K, 12 at 2K, 657 at 128K.

    `plan_knobs` caps this at what each family's names allow (about 2,400 decoys at the default
    hops, reached near 500K tokens); longer documents then grow by filler alone. `make_sample`
    drops default decoys from prompts too short to hold them.
    """
    return 2 + length // 200


def max_distractors(name: str, hops: int) -> int:
    """The most decoy facts family `name` can place at `hops` with the world's names (-1: not even none)."""
    needed = NAMES_NEEDED[name]
    if needed(hops, 0) > len(ALL_NAMES):
        return -1
    lo, hi = 0, 4 * len(ALL_NAMES)  # names_needed grows with distractors, by at least one per 3
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if needed(hops, mid) <= len(ALL_NAMES) else (lo, mid - 1)
    return lo


def plan_knobs(name: str, length: int, hops: int | None, distractors: int | None) -> tuple[int, int]:
    """(hops, distractors) of family `name` at `length`: defaults filled in, the default number of
    decoys capped at what the world's names allow; UserError for values no document can hold."""
    if not 32 <= length <= MAX_LENGTH:
        raise UserError(f"synthetic length {length} is out of range: use 32..{MAX_LENGTH} prompt tokens")
    if hops is not None and hops < 1:
        raise UserError(f"synthetic hops {hops} must be at least 1")
    if distractors is not None and distractors < 0:
        raise UserError(f"synthetic distractors {distractors} must be 0 or more")
    h = hops if hops is not None else DEFAULT_HOPS.get(name, 2)
    most = max_distractors(name, h)
    if most < 0:
        raise UserError(f"synthetic family {name!r} cannot chain {h} hops: its world has {len(ALL_NAMES):,} names; use fewer hops")
    if distractors is not None and distractors > most:
        raise UserError(f"synthetic family {name!r} places at most {most} distractors at {h} hops (its world has "
                        f"{len(ALL_NAMES):,} names); got {distractors}")
    if (h + (distractors or 0)) * MIN_FACT_TOKENS > length * 1.1:
        raise UserError(f"synthetic family {name!r}: a {length}-token prompt cannot hold {h} hops and "
                        f"{distractors or 0} distractors; ask for a longer --length or fewer of them")
    return h, min(default_distractors(length), most) if distractors is None else distractors


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

    `tokenizer` (required) counts the tokens: the Hugging Face tokenizer of the model the samples are
    for, or a `PieceTokenizer` around it (callers that synthesize item by item pass the same one each
    time, so its memo carries over).
    """
    if tokenizer is None:
        raise TypeError("synthesize() needs the tokenizer that counts prompt lengths (tokenizer=...)")
    drafters = [(name, FAMILIES.get(name)) for name in tasks]
    knobs = {name: plan_knobs(name, length, hops, distractors) for name in tasks}  # every refusal before any work
    tokenizer = tokenizer if isinstance(tokenizer, PieceTokenizer) else PieceTokenizer(tokenizer)
    counters = {name: 0 for name in tasks}
    samples = []
    for i in range(n):
        name, drafter = drafters[i % len(drafters)]
        index = counters[name]
        counters[name] += 1
        samples.append(make_sample(name, drafter, index, length, seed, hops, distractors, tokenizer, knobs[name]))
        if progress:
            progress(i + 1)
    return samples


def make_sample(name: str, drafter: Drafter, index: int, length: int, seed: int, hops: int | None,
                distractors: int | None, tokenizer, knobs: tuple[int, int] | None = None) -> Sample:
    """Sample `index` of family `name`: a draft, then its document filled to `length` prompt tokens.

    With the default decoy count, a prompt too short for the facts and the question loses decoys
    until they fit within +10%; an explicit `distractors` (or hops) that cannot fit is a UserError.
    """
    key = f"{GENERATOR_VERSION}:{seed}:{name}:{length}:{hops}:{distractors}:{index}"
    h, d = knobs or plan_knobs(name, length, hops, distractors)
    count = tokenizer.count   # exact; the document is filled with `estimate`, then the whole prompt counted
    while True:
        rng = random.Random(key)
        draft = drafter(rng, h, d)
        sample = Sample(id=f"{name}-s{seed}-L{length}-{index:06d}", task=name, context="", question=draft.question,
                        answers=draft.answers,
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
                  meta=sample.meta)
