"""Retrospective selection on hand-made score tables; the online difficulty store."""

import json
import math

import pytest

from longrl.config.curriculum import RetrospectiveConfig
from longrl.curriculum.retrospective import (
    DifficultyStore,
    inverse_mean,
    one_minus_mean,
    save_selection,
    select_hard,
)

# K = 4 rollouts per item, binary rewards.
TABLE = {
    "solved":   [1, 1, 1, 1],   # 4/4: never carried
    "easy":     [1, 1, 1, 0],   # difficulty 0.25
    "half":     [1, 0, 1, 0],   # 0.5
    "half2":    [0, 1, 0, 1],   # 0.5, ties broken by id
    "hard":     [0, 0, 0, 1],   # 0.75
    "unsolved": [0, 0, 0, 0],   # 1.0, optionally excluded
}


def ids(selected):
    return [s.id for s in selected]


def test_difficulty_formulas():
    assert one_minus_mean([1, 0, 0, 0]) == 0.75 and one_minus_mean([1, 1]) == 0.0
    assert inverse_mean([1, 0, 0, 0]) == 4.0 and math.isinf(inverse_mean([0, 0]))


def test_hardest_first_and_solved_excluded():
    selected, scored = select_hard(TABLE, RetrospectiveConfig(count=10, fraction=None))
    assert ids(selected) == ["unsolved", "hard", "half", "half2", "easy"]
    assert len(scored) == 6


def test_count_and_fraction():
    assert ids(select_hard(TABLE, RetrospectiveConfig(count=2, fraction=None))[0]) == ["unsolved", "hard"]
    # fraction of all scored items, rounded up: ceil(0.5 * 6) = 3
    assert ids(select_hard(TABLE, RetrospectiveConfig(count=None, fraction=0.5))[0]) == ["unsolved", "hard", "half"]
    assert select_hard(TABLE, RetrospectiveConfig(count=0, fraction=None))[0] == []


def test_exclude_unsolved():
    selected, _ = select_hard(TABLE, RetrospectiveConfig(count=2, fraction=None, exclude_unsolved=True))
    assert ids(selected) == ["hard", "half"]


def test_inverse_mean_orders_the_same_way_here():
    selected, _ = select_hard(TABLE, RetrospectiveConfig(count=3, fraction=None, difficulty="inverse_mean"))
    assert ids(selected) == ["unsolved", "hard", "half"]


def test_non_binary_rewards_below_one_are_not_solves():
    selected, _ = select_hard({"a": [0.9, 0.9], "b": [1.0, 1.0]}, RetrospectiveConfig(count=5, fraction=None))
    assert ids(selected) == ["a"]


def test_store_keeps_latest_observation_and_round_trips(tmp_path):
    store = DifficultyStore()
    store.observe([
        {"step": 1, "phase": "p1", "id": "a", "rewards": [0, 0]},
        {"step": 1, "phase": "p1", "id": "b", "rewards": [1, 0]},
        {"step": 5, "phase": "p1", "id": "a", "rewards": [1, 1]},   # later: a is now solved
    ])
    assert store.scores() == {"a": [1.0, 1.0], "b": [1.0, 0.0]}
    assert store.scores(["b"]) == {"b": [1.0, 0.0]}
    store.save(tmp_path / "store.jsonl")
    assert DifficultyStore.load(tmp_path / "store.jsonl").scores() == store.scores()


def test_solved_is_measured_on_accuracy_not_on_the_shaped_reward():
    """Right every time but penalised for length (overlong shaping): solved K/K, never carried."""
    store = DifficultyStore()
    store.observe([{"step": 3, "phase": "p1", "id": "long-but-right", "rewards": [0.7, 0.9], "correct": [1, 1]},
                   {"step": 3, "phase": "p1", "id": "half", "rewards": [0.8, -0.2], "correct": [1, 0]}])
    by_accuracy, _ = select_hard(store.scores(metric="accuracy"), RetrospectiveConfig(count=5, fraction=None))
    assert ids(by_accuracy) == ["half"]
    by_reward, _ = select_hard(store.scores(metric="reward"), RetrospectiveConfig(count=5, fraction=None))
    assert ids(by_reward) == ["half", "long-but-right"]


def test_selection_saved(tmp_path):
    selected, scored = select_hard(TABLE, RetrospectiveConfig(count=2, fraction=None))
    save_selection(tmp_path, scored, selected, {"mode": "offline"})
    info = json.loads((tmp_path / "selection.json").read_text())
    assert info["selected"] == ["unsolved", "hard"] and info["solved_all"] == 1 and info["solved_none"] == 1
    rows = [json.loads(x) for x in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["id"]: r["difficulty"] for r in rows}["half"] == 0.5


@pytest.mark.parametrize("bad", [{"x": []}])
def test_items_without_scores_are_ignored(bad):
    assert select_hard(bad, RetrospectiveConfig(count=1, fraction=None)) == ([], [])
