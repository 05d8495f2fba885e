"""The text the embedded default tokenizer's merges are learnt from (`longrl model tokenizer`).

    tokenizer = train_tokenizer(corpus_texts(600, seed=1234), vocab_size=2048)   # longrl.models.tokenizer

Synthetic documents, questions (options included) and traces of the original three families, plus the
prompt template. The tokenizer builder (in `models/`) takes these texts as an argument, so the
data package never imports the model package.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from longrl.data.prompt import TEMPLATE
from longrl.data.synthetic import DEFAULT_HOPS, FAMILIES, default_distractors
from longrl.data.synthetic.world import DocumentPlan, build_document


def corpus_texts(n: int, seed: int) -> Iterator[str]:
    """Texts the merges are learnt from: synthetic documents, questions (with their options) and traces."""
    families = ["choice", "docmath", "multihop"]  # fixed: new families must not change the shipped merges
    yield TEMPLATE
    for i in range(n):
        name = families[i % len(families)]
        rng = random.Random(f"corpus:{seed}:{i}")
        length = rng.choice([128, 256, 512, 1024])
        draft = FAMILIES.get(name)(rng, DEFAULT_HOPS[name], default_distractors(length))
        yield build_document(rng, DocumentPlan(draft.facts, draft.topic), length, lambda t: len(t.split()) * 4 // 3)
        yield draft.question                      # choice puts its options in the question
        yield draft.trace
