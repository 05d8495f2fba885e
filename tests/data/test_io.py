"""Sample files: JSONL and parquet round trips; every malformed row named by file, line and field."""

import json

import pytest

from longrl.data.io import read_samples, write_jsonl, write_samples
from longrl.data.schema import Sample
from longrl.errors import DataError

GOOD = {"id": "a", "task": "multihop", "context": "doc", "question": "q?", "answers": ["x"]}


def lines(tmp_path, rows, name="s.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_jsonl_round_trip(tmp_path, samples):
    path = tmp_path / "out.jsonl"
    assert write_samples(path, samples) == len(samples)
    assert read_samples(path).samples == samples


def test_parquet_round_trip(tmp_path, samples):
    path = tmp_path / "out.parquet"
    write_samples(path, samples)
    assert read_samples(path).samples == samples


def test_broken_line_3_is_named(tmp_path):
    path = lines(tmp_path, [GOOD, {**GOOD, "id": "b"}, '{"id": "c", "task": ', {**GOOD, "id": "d"}])
    with pytest.raises(DataError) as err:
        read_samples(path)
    assert f"{path}, line 3" in str(err.value) and "malformed JSON" in str(err.value)


@pytest.mark.parametrize("row, field, problem", [
    ({k: v for k, v in GOOD.items() if k != "question"}, "question", "missing"),      # a required field absent
    ({**GOOD, "context": "  "}, "context", "empty"),                                   # whitespace only
    ({**GOOD, "answers": []}, "answers", "non-empty list"),                            # no gold answer
    ({**GOOD, "answers": 7}, "answers", "non-empty list"),                             # a number, not a list
    ({**GOOD, "answers": " "}, "answers", "non-empty string"),                         # one blank string
    ({**GOOD, "answers": ["x", ""]}, "answers", "non-empty string"),                   # an empty gold
    ({**GOOD, "task": "sudoku"}, "task", "unknown task 'sudoku'; known: choice"),      # not a registered task
    ({**GOOD, "id": 7}, "id", "expected a string"),                                     # wrong type
    ({**GOOD, "choices": ["only one"]}, "choices", "2-10 strings"),                    # too few options
    ({**GOOD, "meta": [1]}, "meta", "expected an object"),                              # meta must be a mapping
    ({**GOOD, "extra": 1}, "extra", "unknown field"),                                   # typo'd field
])
def test_bad_rows_name_line_and_field(tmp_path, row, field, problem):
    path = lines(tmp_path, [GOOD | {"id": "first"}, row])
    with pytest.raises(DataError) as err:
        read_samples(path)
    assert err.value.where == "line 2" and err.value.field == field
    assert problem in str(err.value) and str(path) in str(err.value)


def test_answers_may_be_one_plain_string(tmp_path):
    (sample,) = read_samples(lines(tmp_path, [{**GOOD, "answers": "Tamo"}])).samples
    assert sample.answers == ["Tamo"]


def test_non_object_line(tmp_path):
    with pytest.raises(DataError, match="line 1: expected a JSON object, got list"):
        read_samples(lines(tmp_path, ["[1, 2]"]))


def test_skip_bad_reports_count(tmp_path):
    path = lines(tmp_path, [GOOD, "not json", {**GOOD, "id": "b", "answers": []}, {**GOOD, "id": "c"}])
    loaded = read_samples(path, skip_bad=True)
    assert [s.id for s in loaded.samples] == ["a", "c"]
    assert len(loaded.skipped) == 2 and "line 2" in loaded.skipped[0] and "line 3" in loaded.skipped[1]


def test_duplicate_ids_rejected(tmp_path):
    with pytest.raises(DataError, match="duplicate id 'a'"):
        read_samples(lines(tmp_path, [GOOD, GOOD]))


def test_blank_lines_ignored(tmp_path):
    assert len(read_samples(lines(tmp_path, [GOOD, "", {**GOOD, "id": "b"}])).samples) == 2


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_samples(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not a parquet file")
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_samples(bad)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError, match="line 2: not UTF-8"):
        read_samples(latin)


def test_parquet_bad_row_named(tmp_path):
    write_samples(tmp_path / "ok.parquet", [Sample(**GOOD)])
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "ok.parquet").to_pylist()
    table.append({**table[0], "id": "b", "task": "nope"})
    pq.write_table(pa.Table.from_pylist(table), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"row 1, field 'task'"):
        read_samples(tmp_path / "bad.parquet")


def test_write_is_atomic(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert path.read_text() == '{"a": 1}\n'


def test_deeply_nested_rows_are_refused_with_their_line(tmp_path):
    deep = '{"id": "b", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = lines(tmp_path, [GOOD, deep])
    with pytest.raises(DataError, match=r"s.jsonl, line 2: refused: JSON nested deeper than 64 levels"):
        read_samples(path)
    loaded = read_samples(path, skip_bad=True)
    assert [s.id for s in loaded.samples] == ["a"] and "line 2" in loaded.skipped[0]


def test_parquet_meta_nesting_is_bounded(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_samples(tmp_path / "ok.parquet", [Sample(**GOOD)])
    table = pq.read_table(tmp_path / "ok.parquet").to_pylist()
    table[0]["meta"] = "[" * 5000 + "]" * 5000
    pq.write_table(pa.Table.from_pylist(table), tmp_path / "deep.parquet")
    with pytest.raises(DataError, match=r"row 0, field 'meta': refused: JSON nested deeper than 64"):
        read_samples(tmp_path / "deep.parquet")
