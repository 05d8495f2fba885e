"""Benchmark loaders: each published row format -> Samples; bad files fail with file, line and field."""

from __future__ import annotations

import json

import pytest

from longrl.config.eval import DOCQA7, SyntheticSuiteConfig
from longrl.data.tasks import TASKS
from longrl.errors import DataError, UserError
from longrl.eval.benchmarks import BENCHMARKS, load_suites, synthetic_suite


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_all_seven_formats_load(tmp_path, docqa_dir):
    suites = load_suites(DOCQA7, docqa_dir(tmp_path))
    assert list(suites) == DOCQA7
    docmath = suites["docmath"]
    first = docmath.samples[0]
    assert (first.id, first.task, first.answers) == ("dm-1", "docmath", ["2550"])
    assert first.context == "Revenue was $1,200 million in 2019.\n\nRevenue was $1,350 million in 2020."  # blank paragraph dropped
    assert docmath.samples[1].id == "docmath-2" and docmath.samples[1].answers == ["0.25"]  # no id field: from the line number
    frames = suites["frames"].samples[0]
    assert frames.task == "qa" and frames.answers == ["The Sarn"]
    assert frames.context == "Veldra\nThe capital of Veldra is Oster.\n\nOster\nOster lies on the Sarn."
    hotpot = suites["hotpotqa"].samples
    assert [s.id for s in hotpot] == ["h1", "h2"] and hotpot[1].answers == ["cooper", "a cooper"]
    assert {suites[n].samples[0].task for n in ("2wikimqa", "hotpotqa", "musique")} == {"multihop"}
    assert {suites[n].samples[0].task for n in ("narrativeqa", "qasper")} == {"qa"}
    for suite in suites.values():
        assert suite.source.endswith(f"{suite.name}.jsonl") and len(suite.sha256) == 16
        assert all(TASKS.get(s.task).verifier in ("numeric", "qa") for s in suite.samples)
    assert [s.display for s in suites.values()] == ["DocMath", "Frames", "2Wiki", "HotpotQA", "MuSiQue", "NarrativeQA", "Qasper"]


def test_limit_keeps_the_first_items(tmp_path, docqa_dir):
    suites = load_suites(["hotpotqa"], docqa_dir(tmp_path), limit=1)
    assert [s.id for s in suites["hotpotqa"].samples] == ["h1"]


def test_documents_and_questions_are_stripped(tmp_path):
    write_jsonl(tmp_path / "qasper.jsonl", [{"_id": "q", "input": "  Q?\n", "context": "\n doc \n", "answers": [" A "]}])
    sample = BENCHMARKS.get("qasper").load(tmp_path).samples[0]
    assert (sample.question, sample.context, sample.answers) == ("Q?", "doc", ["A"])


def test_docmath_gold_numbers_never_use_exponents(tmp_path, docqa_rows):
    rows = [dict(docqa_rows["docmath"][0], question_id=str(i), ground_truth=g) for i, g in enumerate([1e-05, 2.5e20, 3.0, "12%"])]
    write_jsonl(tmp_path / "docmath.jsonl", rows)
    golds = [s.answers[0] for s in BENCHMARKS.get("docmath").load(tmp_path).samples]
    assert golds == ["0.00001", "250000000000000000000", "3", "12%"]


@pytest.mark.parametrize("name, line, field, fragment", [
    ("docmath", {"question": "q", "ground_truth": 1}, "paragraphs", "missing"),
    ("docmath", {"question": "q", "paragraphs": "text", "ground_truth": 1}, "paragraphs", "list"),
    ("docmath", {"question": "q", "paragraphs": ["p"], "ground_truth": True}, "ground_truth", "boolean"),
    ("docmath", {"question": "q", "paragraphs": ["p"], "ground_truth": float("nan")}, "ground_truth", "finite"),
    ("docmath", {"question": "", "paragraphs": ["p"], "ground_truth": 1}, "question", "empty"),
    ("frames", {"Prompt": "q", "Answer": "a", "wiki_items": [{"title": "t"}]}, "wiki_items[0]", "text"),
    ("frames", {"Prompt": "q", "wiki_items": [{"title": "t", "text": "x"}]}, "Answer", "missing"),
    ("hotpotqa", {"input": "q", "context": "c", "answers": []}, "answers", "non-empty"),
    ("hotpotqa", {"input": "q", "context": 3, "answers": ["a"]}, "context", "string"),
    ("musique", {"context": "c", "answers": ["a"]}, "input", "missing"),
])
def test_malformed_rows_name_file_line_and_field(tmp_path, docqa_rows, name, line, field, fragment):
    good = {"docmath": docqa_rows["docmath"][0], "frames": {"Prompt": "q", "Answer": "a", "wiki_items": [{"title": "t", "text": "x"}]}}.get(
        name, docqa_rows["hotpotqa"][0])
    path = tmp_path / f"{name}.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(DataError) as err:
        BENCHMARKS.get(name).load(tmp_path)
    assert (err.value.path, err.value.where, err.value.field) == (str(path), "line 2", field)
    assert fragment in err.value.problem


def test_bad_json_missing_file_duplicate_ids(tmp_path, docqa_rows):
    (tmp_path / "narrativeqa.jsonl").write_text('{"_id": "n", "input": "q", "context": "c", "answers": ["a"]}\n{"_id": oops}\n')
    with pytest.raises(DataError, match=r"narrativeqa.jsonl, line 2: malformed JSON"):
        BENCHMARKS.get("narrativeqa").load(tmp_path)
    with pytest.raises(DataError, match=r"qasper.jsonl, open: no such file"):
        BENCHMARKS.get("qasper").load(tmp_path)
    write_jsonl(tmp_path / "musique.jsonl", [docqa_rows["musique"][0]] * 2)
    with pytest.raises(DataError, match="duplicate id 'm1'"):
        BENCHMARKS.get("musique").load(tmp_path)
    with pytest.raises(UserError, match="--data-dir"):
        load_suites(["musique"], None)
    with pytest.raises(UserError, match="unknown evaluation benchmark 'hotpot'; known: 2wikimqa"):
        load_suites(["hotpot"], tmp_path)


def test_an_empty_benchmark_file_is_refused_not_scored_zero(tmp_path):
    (tmp_path / "frames.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match=r"frames.jsonl, file: no items: benchmark 'frames' would score 0 on nothing"):
        load_suites(["frames"], tmp_path)


def test_synthetic_suites_are_held_out_and_deterministic(tokenizer):
    suite = BENCHMARKS.get("synthetic-256").load(None, SyntheticSuiteConfig(n=3, seed=77), tokenizer)
    assert suite.name == "synthetic-256" and suite.display == "Synth-256" and "seed=77" in suite.version
    assert [s.task for s in suite.samples] == ["docmath", "multihop", "choice"]
    again = synthetic_suite(256, 3, 77, tokenizer=tokenizer)
    assert [s.to_dict() for s in again] == [s.to_dict() for s in suite.samples]
    training = synthetic_suite(256, 3, 0, tokenizer=tokenizer)  # another seed: other items
    assert not {s.context for s in training} & {s.context for s in suite.samples}
    assert "synthetic-4096" in BENCHMARKS and "synthetic-x" not in BENCHMARKS and "synthetic-<length>" in BENCHMARKS.names()
    with pytest.raises(UserError, match="too short"):
        synthetic_suite(8, 1, 0, tokenizer=tokenizer)


def test_published_protocol_builds_documents_and_golds_as_the_scripts(tmp_path, docqa_dir):
    suites = load_suites(["docmath", "frames", "hotpotqa"], docqa_dir(tmp_path), protocol="published")
    first = suites["docmath"].samples[0]
    assert first.context == "Revenue was $1,200 million in 2019.\n  \nRevenue was $1,350 million in 2020."
    raw = json.loads((tmp_path / "docmath.jsonl").read_text().splitlines()[0])
    assert first.context == "\n".join(raw["paragraphs"]).strip()          # one newline, nothing dropped
    frames_raw = json.loads((tmp_path / "frames.jsonl").read_text().splitlines()[0])
    assert suites["frames"].samples[0].context == "\n".join(f"{w['title']}\n{w['text']}" for w in frames_raw["wiki_items"]).strip()
    assert suites["hotpotqa"].samples[1].answers == ["cooper", "a cooper"]  # all kept; the published rule reads the first


def test_published_docmath_golds_are_written_as_python_writes_them(tmp_path, docqa_rows):
    rows = [dict(docqa_rows["docmath"][0], question_id=str(i), ground_truth=g) for i, g in enumerate([1e-05, 2.5e20, 3.0, 7, "12%"])]
    write_jsonl(tmp_path / "docmath.jsonl", rows)
    golds = [s.answers[0] for s in BENCHMARKS.get("docmath").load(tmp_path, protocol="published").samples]
    assert golds == ["1e-05", "2.5e+20", "3.0", "7", "12%"]
