"""Safe number parsing and numeric comparison."""

from __future__ import annotations

import pytest

from longrl.rewards.numbers import (
    ParsedNumber,
    close_to,
    numbers_match,
    parse_first_number,
)

PARSE_CASES = [
    ("42", ParsedNumber(42.0, 1.0), "plain integer"),
    ("1,234,567.5", ParsedNumber(1234567.5, 1.0), "thousands separators"),
    ("$1,234", ParsedNumber(1234.0, 1.0), "currency symbol"),
    ("-$5.5", ParsedNumber(-5.5, 1.0), "sign before the currency"),
    ("\u22123.2", ParsedNumber(-3.2, 1.0), "Unicode minus"),
    ("12.5%", ParsedNumber(12.5, 1.0), "percent keeps the written value"),
    ("approximately 3.5 million dollars", ParsedNumber(3.5, 1e6), "unit word and leading words"),
    ("2 Billion", ParsedNumber(2.0, 1e9), "unit word in any case"),
    ("1.5e3", ParsedNumber(1500.0, 1.0), "scientific notation"),
    (".25", ParsedNumber(0.25, 1.0), "bare decimal"),
    ("in 2019 it was 7", ParsedNumber(2019.0, 1.0), "the FIRST number"),
    ("12-5", ParsedNumber(12.0, 1.0), "a dash after a number is not a sign of the first one"),
    ("no digits here", None, "no number"),
    ("nan", None, "nan is not a number here"),
    ("inf", None, "inf is not a number here"),
    ("1e999", None, "overflow to infinity is rejected"),
    ("9" * 5000, None, "5,000 digits are absurd"),
    ("1" + "0" * 300 + " trillion", None, "a huge value is rejected"),
]


@pytest.mark.parametrize("text,expected,reason", PARSE_CASES, ids=[c[-1] for c in PARSE_CASES])
def test_parse_first_number(text, expected, reason):
    assert parse_first_number(text) == expected, reason


def test_candidates_cover_unit_words_both_ways():
    assert ParsedNumber(3.5, 1e6).candidates() == (3.5, 3.5e6)
    assert ParsedNumber(3.5, 1.0).candidates() == (3.5,)


def naive_numbers_match(p: float, g: float, tol: float) -> bool:
    for target in (g, g * 100, g / 100):
        if target == 0:
            if p == 0:
                return True
        elif abs(p - target) / abs(target) <= tol:
            return True
    return False


def test_numbers_match_against_reference():
    import random

    rng = random.Random(0)
    for _ in range(2000):
        g = rng.choice([0.0, rng.uniform(-1e4, 1e4), rng.uniform(-1, 1)])
        p = rng.choice([g, g * 100, g / 100, g * (1 + rng.uniform(-0.003, 0.003)), rng.uniform(-1e4, 1e4)])
        assert numbers_match(p, g, 0.0015) == naive_numbers_match(p, g, 0.0015)


def test_close_to_is_exact_at_zero():
    assert close_to(0.0, 0.0, 0.5)
    assert not close_to(1e-12, 0.0, 0.5)
    assert close_to(100.14, 100.0, 0.0015)
    assert not close_to(100.16, 100.0, 0.0015)
