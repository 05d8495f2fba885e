"""Safe number parsing and numeric comparison."""

from __future__ import annotations

import pytest

from longrl.rewards.numbers import ParsedNumber, close_to, numbers_match, parse_first_number, rounds_to, stated_scales

PARSE_CASES = [
    # (text, (value, scale) or None, reason)
    ("42", (42.0, 1.0), "plain integer"),
    ("1,234,567.5", (1234567.5, 1.0), "thousands separators"),
    ("$1,234", (1234.0, 1.0), "currency symbol"),
    ("-$5.5", (-5.5, 1.0), "sign before the currency"),
    ("$-5", (-5.0, 1.0), "sign after the currency"),
    ("US$5", (5.0, 1.0), "currency with a country prefix"),
    ("\u22123.2", (-3.2, 1.0), "Unicode minus"),
    ("12.5%", (12.5, 1.0), "percent keeps the written value"),
    ("approximately 3.5 million dollars", (3.5, 1e6), "unit word and leading words"),
    ("2 Billion", (2.0, 1e9), "unit word in any case"),
    ("$2.5bn", (2.5, 1e9), "unit suffix"),
    ("1.5e3", (1500.0, 1.0), "scientific notation"),
    (".25", (0.25, 1.0), "bare decimal"),
    ("(42).", (42.0, 1.0), "brackets and punctuation around the number"),
    ("5-year", (5.0, 1.0), "a hyphenated unit"),
    ("\u00a312.5\u00b0", (12.5, 1.0), "a degree sign after the number"),
    ("3rd", (3.0, 1.0), "an ordinal suffix"),
    ("in 2019 it was 7", (2019.0, 1.0), "the FIRST number"),
    ("no digits here", None, "no number"),
    ("nan", None, "nan is not a number here"),
    ("inf", None, "inf is not a number here"),
    ("1e999", None, "overflow to infinity is rejected"),
    ("1e99999", None, "an exponent too large to read exactly is rejected, not read as 1"),
    ("1e-400", None, "a non-zero number that underflows to 0 is rejected"),
    ("9" * 5000, None, "5,000 digits are absurd"),
    ("1" + "0" * 300 + " trillion", None, "a huge value is rejected"),
    ("1,00,000", None, "ambiguous grouping (not threes) is rejected, not read as 1"),
    ("1,2", None, "a decimal comma or a list: ambiguous"),
    ("1,000,00", None, "a short last group"),
    ("1 234", None, "a space-grouped thousand or two numbers: ambiguous"),
    ("0x1F", None, "hex is rejected, not read as 0"),
    ("0b101", None, "binary is rejected"),
    ("12-5", None, "a range or a subtraction is not one number"),
    ("3/4", None, "a fraction is not read (as 3 or otherwise)"),
    ("x=5", None, "code-shaped: an assignment glued to the number"),
    ("import('os').system('touch /tmp/pytest-of-root/pytest-0/t0/pwned')", None,
     "code-shaped: the first word with a digit is a path, so no number is read from it"),
    ("\u0661\u0662\u0663", (123.0, 1.0), "Arabic-Indic digits read by their value (one script)"),
    ("\uff11\uff12\uff13.\uff15", (123.5, 1.0), "fullwidth digits read by their value"),
    ("1\u06623", None, "digits of two scripts in one number are rejected"),
]


@pytest.mark.parametrize("text,expected,reason", PARSE_CASES, ids=[c[-1] for c in PARSE_CASES])
def test_parse_first_number(text, expected, reason):
    parsed = parse_first_number(text)
    assert (None if parsed is None else (parsed.value, parsed.scale)) == expected, reason


def test_precision_as_written():
    assert parse_first_number("0.260").decimals == 3 and parse_first_number("0.260").significant == 3
    assert parse_first_number("1,200").decimals == 0 and parse_first_number("1,200").significant == 2
    assert parse_first_number("1.5e3").decimals is None


def test_rounds_to_the_stated_precision():
    assert rounds_to(0.26, 0.2573, 2, 2)          # rounded to two decimals
    assert rounds_to(12.5, 12.47, 1, 3)
    assert not rounds_to(0.25, 0.2573, 2, 2)      # 0.2573 rounds to 0.26
    assert not rounds_to(3.0, 2.6, 0, 1)          # an integer states no rounding
    assert not rounds_to(0.3, 0.26, 1, 1)         # one significant digit is too coarse


def test_stated_scales():
    assert stated_scales("Consolidated results (in thousands, except per share data)") == (1e3,)
    assert stated_scales("($ in millions)") == (1e6,)
    assert stated_scales("Revenue in \u20ac million and staff in $000s") == (1e3, 1e6)
    assert stated_scales("USD billions") == (1e9,)
    assert stated_scales("It rose by a thousand units") == ()


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
