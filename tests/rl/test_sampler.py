"""rl/sampler.py: seeded epochs, exact resume from the cursor, loading data sources."""

from __future__ import annotations

import pytest

from longrl.data.config import DataSource, SynthSpec
from longrl.data.io import write_samples
from longrl.errors import DataError, UserError
from longrl.rl.sampler import PromptSampler, epoch_order, load_items


def ids(draws):
    return [d.item.id for d in draws]


def test_each_epoch_visits_every_item_once_in_a_seeded_order(samples):
    sampler = PromptSampler(samples, seed=3)
    first, second = sampler.next(len(samples)), sampler.next(len(samples))
    assert sorted(ids(first)) == sorted(s.id for s in samples) == sorted(ids(second))
    assert ids(first) != ids(second)  # a new order each epoch
    assert [d.index for d in first + second] == list(range(2 * len(samples)))
    assert ids(PromptSampler(samples, seed=3).next(5)) == ids(first)[:5]
    assert ids(PromptSampler(samples, seed=4).next(len(samples))) != ids(first)


@pytest.mark.parametrize("cut", [0, 1, 5, 12, 13, 30])
def test_resume_from_cursor_continues_identically(samples, cut):
    straight = PromptSampler(samples, seed=0)
    expected = straight.next(40)
    a = PromptSampler(samples, seed=0)
    head = a.next(cut)
    b = PromptSampler(samples, seed=0, cursor=a.cursor)
    tail = b.next(40 - cut)
    assert [(d.index, d.item.id) for d in head + tail] == [(d.index, d.item.id) for d in expected]


def test_epoch_order_is_a_permutation():
    order = epoch_order(50, seed=1, epoch=2)
    assert sorted(order) == list(range(50)) and order == epoch_order(50, seed=1, epoch=2)


def test_empty_items_are_a_user_error():
    with pytest.raises(UserError, match="no training items"):
        PromptSampler([], seed=0)


def test_load_items_from_file_and_synth_with_limits(tmp_path, samples, tokenizer):
    path = tmp_path / "train.jsonl"
    write_samples(path, samples[:5])
    synth = SynthSpec(tasks=["multihop"], n=3, length=120, seed=9)
    items = load_items([DataSource(path=str(path), limit=4), DataSource(synth=synth)], tokenizer=tokenizer)
    assert [s.id for s in items[:4]] == [s.id for s in samples[:4]]
    assert len(items) == 7 and all(s.task == "multihop" for s in items[4:])


def test_load_items_rejects_duplicate_ids_and_bad_files(tmp_path, samples):
    path = tmp_path / "a.jsonl"
    write_samples(path, samples[:3])
    with pytest.raises(UserError, match=r"sample id .* already appears in source 0"):
        load_items([DataSource(path=str(path)), DataSource(path=str(path))])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 1, field 'task'"):
        load_items([DataSource(path=str(bad))])
