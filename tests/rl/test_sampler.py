"""rl/sampler.py: seeded epochs, exact resume from the cursor."""

from __future__ import annotations

import pytest

from longrl.errors import UserError
from longrl.rl.sampler import PromptSampler, epoch_order


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
