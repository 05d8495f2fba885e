"""Eval test fixtures: tiny rows in the published formats of the seven DocQA benchmarks.

  docqa_rows   {benchmark: [row, ...]} in each file's own format
  docqa_dir    a function folder -> folder, writing docmath.jsonl, frames.jsonl and the five LongBench files
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DOCMATH = [
    {"question_id": "dm-1", "question": "What was the total revenue in 2019 and 2020, in millions?",
     "paragraphs": ["Revenue was $1,200 million in 2019.", "  ", "Revenue was $1,350 million in 2020."], "ground_truth": 2550},
    {"question": "By what fraction did costs grow?", "paragraphs": ["Costs went from 200 to 250."], "ground_truth": 0.25},
]
FRAMES = [
    {"Prompt": "Which river flows through the capital of Veldra?", "Answer": "The Sarn",
     "wiki_items": [{"title": "Veldra", "text": "The capital of Veldra is Oster."}, {"title": "Oster", "text": "Oster lies on the Sarn."}]},
]
LONGBENCH = {
    "2wikimqa": [{"_id": "w1", "input": "Who directed the film Nora?", "context": "Passage 1: Nora is a film by Ada Kell.", "answers": ["Ada Kell"]}],
    "hotpotqa": [{"_id": "h1", "input": "Where was Ilo born?", "context": "Ilo was born in Tarsk.", "answers": ["Tarsk"]},
                 {"_id": "h2", "input": "What is Ilo's trade?", "context": "Ilo is a cooper.", "answers": ["cooper", "a cooper"]}],
    "musique": [{"_id": "m1", "input": "Which country is Tarsk in?", "context": "Tarsk is a town in Brevia.", "answers": ["Brevia"]}],
    "narrativeqa": [{"_id": "n1", "input": "Who finds the key?", "context": "In the end, Mara finds the key.", "answers": ["Mara"]}],
    "qasper": [{"_id": "q1", "input": "Which dataset is used?", "context": "We evaluate on the Kest corpus.", "answers": ["Kest corpus"]}],
}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def docqa_rows() -> dict[str, list]:
    return {"docmath": DOCMATH, "frames": FRAMES, **LONGBENCH}


@pytest.fixture()
def docqa_dir(docqa_rows):
    def write(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in docqa_rows.items():
            write_jsonl(folder / f"{name}.jsonl", rows)
        return folder

    return write
