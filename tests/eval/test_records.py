"""samples.jsonl: appended per item, read back on resume, torn tails repaired."""

from __future__ import annotations

import json

import pytest

from longrl.errors import DataError
from longrl.eval.records import SampleLog


def rows(item_id, n=2):
    return [{"id": item_id, "sample": j, "score": float(j == 0)} for j in range(n)]


def test_append_and_reopen(tmp_path):
    path = tmp_path / "b" / "samples.jsonl"
    log = SampleLog.open(path, 2)
    log.append_item(rows("a"))
    assert path.read_text().count("\n") == 2  # flushed as soon as the item is written
    log.append_item(rows("b"))
    log.close()
    again = SampleLog.open(path, 2)
    assert list(again.finished) == ["a", "b"] and again.finished["a"] == rows("a") and again.repaired == 0
    again.close()
    with pytest.raises(ValueError, match="has 2 rows"):
        SampleLog.open(path, 2).append_item(rows("c", 3))


def test_torn_last_line_and_incomplete_item_are_dropped(tmp_path):
    path = tmp_path / "samples.jsonl"
    lines = [json.dumps(r) for r in rows("a") + rows("b")[:1]]  # item b has 1 of its 2 rows
    path.write_text("\n".join(lines) + "\n" + '{"id": "c", "sam')  # a kill mid-write
    log = SampleLog.open(path, 2)
    assert list(log.finished) == ["a"] and log.repaired == 2
    log.append_item(rows("b"))
    log.close()
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "a", "b", "b"]


def test_rows_in_any_order_and_a_rewritten_sample(tmp_path):
    path = tmp_path / "samples.jsonl"
    a = rows("a", 3)
    path.write_text("".join(json.dumps(r) + "\n" for r in [a[2], a[0], a[1]]))
    log = SampleLog.open(path, 3)
    assert log.finished["a"] == a
    log.close()


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(rows("a")[0]) + "\nnot json\n" + json.dumps(rows("a")[1]) + "\n")
    with pytest.raises(DataError, match=r"samples.jsonl, line 2: unreadable results row"):
        SampleLog.open(path, 2)
    path.write_text(json.dumps({"id": "a", "sample": -1}) + "\n")
    with pytest.raises(DataError, match="field 'sample'"):
        SampleLog.open(path, 1)
