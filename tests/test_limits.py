"""limits.py: JSON nesting and YAML alias expansion are bounded, never a RecursionError or a hang; lone
surrogates and files that are not small regular files are refused where they are read."""

import os
import time

import pytest
import yaml

from longrl.limits import (
    MAX_DEPTH,
    LimitError,
    check_expansion,
    load_json,
    load_yaml,
    read_small_file,
    replace_lone_surrogates,
)

BOMB = """model:
  rope_scaling:
    a: &a [x, x, x, x, x, x, x, x, x]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
"""


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_json_depth_is_bounded():
    assert load_json(nested(MAX_DEPTH)) is not None
    with pytest.raises(LimitError, match=f"deeper than {MAX_DEPTH}"):
        load_json(nested(MAX_DEPTH + 1))
    with pytest.raises(LimitError):  # past Python's own recursion limit: still a LimitError
        load_json(nested(100_000))
    with pytest.raises(LimitError):
        load_json('{"a": ' * 500 + "1" + "}" * 500)
    with pytest.raises(LimitError, match="holds an integer of more than"):
        load_json('{"n": 1' + "0" * 5000 + "}")
    assert isinstance(LimitError("x"), ValueError)  # callers catching ValueError catch it too


def test_yaml_alias_bomb_is_refused_fast():
    start = time.perf_counter()
    with pytest.raises(LimitError, match="expands to more than"):
        load_yaml(BOMB)
    assert time.perf_counter() - start < 1.0  # sized by identity, not by expanding 9^7 values


def test_expansion_counts_shared_blocks_as_copies():
    shared = [1, 2, 3]
    assert check_expansion({"a": shared, "b": shared}) == 1 + 2 + 2 * 4  # dict + 2 keys + 2 x (list + 3)
    assert check_expansion("scalar") == 1
    with pytest.raises(LimitError):
        check_expansion({"a": shared, "b": shared}, max_nodes=10)


def test_recursive_alias_and_deep_yaml_are_refused():
    with pytest.raises(LimitError, match="recursive alias"):
        load_yaml("a: &a [1, *a]")
    with pytest.raises(LimitError, match="deeper than"):
        load_yaml("x: " + nested(5000))
    with pytest.raises(yaml.YAMLError):  # syntax errors stay what they were
        load_yaml("a: [1, 2")
    assert load_yaml("a: &x {k: 1}\nb: *x\n") == {"a": {"k": 1}, "b": {"k": 1}}


def test_lone_surrogates_are_refused_and_pairs_kept():
    """Issue 25, case 9: "\ud800" decoded into a string no UTF-8 file or tokenizer takes, and failed far away."""
    for text in ['{"a": "x\\ud800"}', b'["\\uDFFF"]', '{"\\udbff": 1}', '{"a": {"b": ["ok", "\\ud800\\ud800"]}}']:
        with pytest.raises(LimitError, match=r"holds a lone surrogate \\ud[89a-f][0-9a-f]{2} \(half of a UTF-16 pair"):
            load_json(text)
    assert load_json('{"a": "\\ud83d\\ude00", "b": "\\\\ud800"}') == {"a": "\U0001f600", "b": "\\ud800"}
    assert replace_lone_surrogates({"a": ["x\ud800y", 1], "b": "\U0001f600"}) == {"a": ["x\ufffdy", 1], "b": "\U0001f600"}


def test_small_files_only_from_regular_files(tmp_path):
    """Issue 25, case 9: a config.yaml linked to /dev/zero was read until memory ran out."""
    (tmp_path / "c.yaml").write_text("a: 1\n")
    assert read_small_file(tmp_path / "c.yaml") == b"a: 1\n"
    os.symlink("/dev/zero", tmp_path / "zero.yaml")
    with pytest.raises(LimitError, match="is not a regular file"):
        read_small_file(tmp_path / "zero.yaml")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(LimitError, match="is not a regular file"):
        read_small_file(tmp_path / "fifo")                      # no writer: opened without waiting for one
    (tmp_path / "big").write_bytes(b"x" * 101)
    with pytest.raises(LimitError, match="is larger than 100 bytes"):
        read_small_file(tmp_path / "big", limit=100)
    with pytest.raises(FileNotFoundError):
        read_small_file(tmp_path / "missing")
