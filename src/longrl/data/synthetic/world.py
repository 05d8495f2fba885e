"""The vocabulary and sentence grammar shared by the synthetic task families.

Entities are made-up two-syllable names ("Bako", "Rilu"). The first 160 (`NAMES`) are single
tokens of the default tokenizer, so a tiny model can look them up; documents that need more
distinct names than that (long documents carry hundreds of decoys) draw from all 4,900
consonant-vowel-consonant-vowel names (`ALL_NAMES`), and a request for more than those is a
`UserError`. Filler sentences come from a small grammar and
never state a fact of the kind a question asks about; names appear in some of them, so the only
way to an answer is matching the full fact pattern, not spotting a name.

Lengths are counted with a `count_tokens(text) -> int` callable (the default tokenizer in
practice); sentences are joined with single spaces, which the Qwen2 split pattern keeps as token
boundaries, so per-sentence counts add up to the document's count.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from longrl.errors import UserError

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


def _make_names(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return sorted(rng.sample(ALL_NAMES, count))


ALL_NAMES: list[str] = sorted({(c1 + v1 + c2 + v2).capitalize()
                               for c1 in CONSONANTS for v1 in VOWELS for c2 in CONSONANTS for v2 in VOWELS})
NAMES: list[str] = _make_names(160)
RELATIONS = ["mentor", "partner", "rival", "neighbor", "sponsor", "deputy"]
METRICS = ["revenue", "cost", "profit", "debt", "payroll", "budget"]

_SUBJECTS = {
    "general": ["The committee", "The council", "A local paper", "The museum", "The old library", "A travel guide",
                "The archive", "The school board", "A visiting scholar", "The harbor office"],
    "report": ["The board", "The audit team", "Management", "The finance office", "The annual report", "Investors",
               "The treasury desk", "The sales division", "An analyst", "The compliance unit"],
    "legal": ["The contract", "The tenant", "The insurer", "Either party", "The agreement", "The court",
              "The policy holder", "The clause", "The landlord", "The claimant"],
}
_VERBS = ["reviewed", "described", "noted", "approved", "discussed", "recorded", "mentioned", "examined",
          "summarised", "questioned", "praised", "rejected", "updated", "published", "explained"]
_OBJECTS = ["the seasonal schedule", "a new policy", "the quarterly plan", "the long report", "several changes",
            "the public notice", "an earlier decision", "the shipping routes", "the weather records",
            "the building permits", "a draft proposal", "the river crossing", "the annual budget", "the old maps",
            "the service terms", "a minor dispute", "the opening hours", "the training program"]
_TAILS = ["in the spring", "after a long meeting", "during the winter", "without much debate", "in the northern office",
          "at the end of the year", "before the deadline", "with some concern", "for the second time",
          "in a short statement", "on a quiet morning", "after the vote", "in great detail", "at the main hall"]
_NAME_FILLER = ["{n} visited {o} {t}.", "{n} wrote a letter about {o}.", "{n} was praised {t}.",
                "People in the town often talk about {n}.", "{n} moved to a new house {t}.",
                "{n} spoke about {o} {t}."]


def _pick(index: int, *sizes: int) -> list[int]:
    """Mixed-radix digits of `index` (one random draw picks every part of a sentence)."""
    digits = []
    for size in sizes:
        index, digit = divmod(index, size)
        digits.append(digit)
    return digits


def joined(parts: list[str]) -> str:
    """"A, B and C" (one part: itself): how questions and traces list several things."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" and {parts[-1]}"


def filler_sentence(rng: random.Random, topic: str) -> str:
    """One sentence that states no fact a question could ask about."""
    if rng.random() < 0.2:
        f, n, o, t = _pick(rng.getrandbits(40), len(_NAME_FILLER), len(NAMES), len(_OBJECTS), len(_TAILS))
        return _NAME_FILLER[f].format(n=NAMES[n], o=_OBJECTS[o], t=_TAILS[t])
    subjects = _SUBJECTS[topic]
    s, v, o, t = _pick(rng.getrandbits(40), len(subjects), len(_VERBS), len(_OBJECTS), len(_TAILS))
    return f"{subjects[s]} {_VERBS[v]} {_OBJECTS[o]} {_TAILS[t]}."


_NAME_SET, _ALL_NAME_SET = frozenset(NAMES), frozenset(ALL_NAMES)


def distinct_names(rng: random.Random, k: int, exclude: set[str] = frozenset()) -> list[str]:
    """`k` names not in `exclude`: from the single-token `NAMES` while they last, else from `ALL_NAMES`."""
    pool = NAMES
    if len(exclude) + k > len(NAMES) and len(NAMES) - len(_NAME_SET.intersection(exclude)) < k:
        pool = ALL_NAMES
        if len(exclude) + k > len(ALL_NAMES) and len(ALL_NAMES) - len(_ALL_NAME_SET.intersection(exclude)) < k:
            raise UserError(f"a synthetic document needs more than the {len(ALL_NAMES):,} distinct names there are "
                            f"({k + len(exclude):,}): ask for fewer distractors or a shorter length")
    picked: list[str] = []
    seen: set[str] = set()
    while len(picked) < k:              # rejection sampling: `exclude` is small next to the pool, or the pool is ALL_NAMES
        name = pool[rng.randrange(len(pool))]
        if name not in exclude and name not in seen:
            picked.append(name)
            seen.add(name)
    return picked


@dataclass
class DocumentPlan:
    """Facts to place in a document of filler; `build_document` fills it to a token target."""

    facts: list[str]
    topic: str


def build_document(
    rng: random.Random,
    plan: DocumentPlan,
    doc_tokens: int,
    count_tokens: Callable[[str], int],
    paragraph_sentences: int = 6,
) -> str:
    """Facts in shuffled order, scattered among filler, until about `doc_tokens` tokens.

    Each fact lands at a uniformly random sentence position; paragraphs break every few
    sentences. The result's token count is within a sentence of the target.
    """
    facts = list(plan.facts)
    rng.shuffle(facts)
    used = sum(count_tokens(" " + f) for f in facts)
    fillers: list[str] = []
    while used < doc_tokens:
        sentence = filler_sentence(rng, plan.topic)
        cost = count_tokens(" " + sentence)
        if used + cost > doc_tokens and used + cost - doc_tokens > doc_tokens - used:
            break  # stopping here is closer to the target than adding one more sentence
        fillers.append(sentence)
        used += cost
    sentences = list(fillers)
    for fact in facts:
        sentences.insert(rng.randint(0, len(sentences)), fact)
    paragraphs = [" ".join(sentences[i:i + paragraph_sentences]) for i in range(0, len(sentences), paragraph_sentences)]
    return "\n\n".join(paragraphs)
