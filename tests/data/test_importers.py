"""DocQA-RL-1.6K parquet import: every row accounted for, in order, answers out of their sentence."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longrl.cli import main
from longrl.data.importers import import_docqa_rl, strip_answer_sentence
from longrl.data.io import read_samples
from longrl.errors import DataError


def prompt(document: str, question: str, fmt: str = "Therefore, the answer is (insert answer here)") -> list[dict]:
    content = ("Please read the following text and answer the question below.\n\n<text>\n" + document +
               f"\n</text>\n\n{question}\n\nFormat your response as follows: \"{fmt}\".")
    return [{"role": "user", "content": content}]


def row(source, document, question, truth, index, fmt=None):
    return {"data_source": source, "prompt": prompt(document, question, *([fmt] if fmt else [])), "ability": "doc-qa",
            "reward_model": {"style": "rule", "ground_truth": truth}, "extra_info": {"index": index, "split": "train"}}


ROWS = [
    row("docmath_tatqa", "Revenue was 10.\n\nCost was 4.", "What is the profit?", "Therefore, the answer is 6.", 0),
    row("long_toc_choices_0_20000", "Clause 3 applies.", "Which clause?\n(A) 1\n(B) 3", "The correct answer is (B)", 1,
        "The correct answer is (insert answer here)"),
    row("multihoprag", "Paris is in France.", "Where is Paris?", "France", 2),
    row("musique", "A met B. B met C.", "Who did the person A met meet?", "Therefore, the answer is C.", 3),
    row("docmath_finqa", "X", "Y?", "Therefore, the answer is 2,500.", 4),
]


@pytest.fixture()
def parquet(tmp_path):
    path = tmp_path / "docqa.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


def test_every_row_imported_in_order(parquet):
    loaded = import_docqa_rl(str(parquet))
    assert loaded.skipped == []
    assert [s.task for s in loaded.samples] == ["docmath", "choice", "multihop", "multihop", "docmath"]
    assert [s.answers for s in loaded.samples] == [["6"], ["B"], ["France"], ["C"], ["2,500"]]
    first = loaded.samples[0]
    assert first.context == "Revenue was 10.\n\nCost was 4." and first.question == "What is the profit?"
    assert loaded.samples[1].question == "Which clause?\n(A) 1\n(B) 3"
    assert first.id == "docmath_tatqa-0" and first.meta["source"] == "docmath_tatqa"


@pytest.mark.parametrize("text, task, expected", [
    ("Therefore, the answer is 30.", "docmath", "30"),          # the published sentence
    ("the answer is $1.5 million", "docmath", "$1.5 million"),   # lower case, no period
    ("The correct answer is (B)", "choice", "B"),                # the multiple-choice sentence
    ("(c)", "choice", "C"),                                      # a bare letter in parentheses
    ("'Oslo'", "multihop", "Oslo"),                              # quoted
    ("Oslo", "multihop", "Oslo"),                                # already bare
])
def test_strip_answer_sentence(text, task, expected):
    assert strip_answer_sentence(text, task) == expected


def test_bad_rows_named_and_skippable(tmp_path):
    rows = ROWS[:2] + [{**ROWS[2], "data_source": "unknown_set"}, {**ROWS[3], "prompt": [{"role": "user", "content": "no template"}]}]
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataError, match=r"row 2, field 'data_source': unknown source 'unknown_set'"):
        import_docqa_rl(str(path))
    loaded = import_docqa_rl(str(path), skip_bad=True)
    assert len(loaded.samples) == 2 and len(loaded.skipped) == 2 and "row 3, field 'prompt'" in loaded.skipped[1]


def test_missing_column(tmp_path):
    path = tmp_path / "cols.parquet"
    pq.write_table(pa.Table.from_pylist([{"data_source": "musique", "prompt": "x"}]), path)
    with pytest.raises(DataError, match="field 'reward_model': column missing"):
        import_docqa_rl(str(path))


def test_cli_import_accounts_for_every_row(parquet, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["data", "import", "--format", "docqa-rl", str(parquet), "--out", str(out)]) == 0
    assert len(read_samples(out).samples) == len(ROWS)
    assert "imported 5 of 5 rows" in capsys.readouterr().err
    assert main(["data", "import", "--format", "nope", str(parquet), "--out", str(out)]) == 2
    junk = tmp_path / "junk.parquet"
    junk.write_text("junk")
    assert main(["data", "import", "--format", "docqa-rl", str(junk), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert not (tmp_path / "x.jsonl").exists()
