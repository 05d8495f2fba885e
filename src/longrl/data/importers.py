"""Importers from published formats into Samples.

`docqa-rl`: DocQA-RL-1.6K's verl parquet (`data_source`, `prompt` = list of {role, content},
`ability`, `reward_model` = {style, ground_truth}, `extra_info` = {index, ...}). The task comes
from `data_source` (docmath* -> docmath, long_toc_choices* -> choice, multihoprag* / musique* ->
multihop), document and question from the prompt text, gold answers out of their sentence
("Therefore, the answer is 30." -> "30", "The correct answer is (B)" -> "B"). Rows keep their order.
A `data_source` may also be a longrl task name, and a file written by `longrl data export --format verl`
reads back as the very Samples it was made from (id, question, choices and meta kept in `extra_info`).

    result = import_docqa_rl("docqa-rl-1.6k.parquet")   # result.samples, result.skipped
"""

from __future__ import annotations

import json
import re
from typing import Any

from longrl.data.io import Loaded, read_parquet_table
from longrl.data.schema import Sample
from longrl.data.tasks import TASKS
from longrl.errors import DataError
from longrl.registry import Registry

TASK_PREFIXES = [("docmath", "docmath"), ("long_toc_choices", "choice"), ("multihoprag", "multihop"), ("musique", "multihop")]
PROMPT_RE = re.compile(r"<text>\n?(?P<document>.*)\n?</text>\s*(?P<question>.*?)\s*Format your response as follows:", re.DOTALL)
ANSWER_SENTENCE_RE = re.compile(r"^\s*(?:therefore,?\s*)?the\s+(?:correct\s+)?answer\s+is:?\s*(?P<answer>.*?)\s*$", re.IGNORECASE | re.DOTALL)
REQUIRED = ("data_source", "prompt", "reward_model")

IMPORTERS: Registry = Registry("import format")


def task_for_source(data_source: str) -> str | None:
    """The task of a data_source: a longrl task name (what `longrl data export --format verl` writes), or a
    DocQA-RL source prefix."""
    if data_source in TASKS:
        return data_source
    for prefix, task in TASK_PREFIXES:
        if data_source.startswith(prefix):
            return task
    return None


def strip_answer_sentence(text: str, task: str) -> str:
    """'Therefore, the answer is 30.' -> '30'; '(B)' / 'The correct answer is (B)' -> 'B' for choice."""
    match = ANSWER_SENTENCE_RE.match(text)
    answer = match.group("answer") if match else text.strip()
    answer = answer.strip().rstrip(".").strip()
    if task == "choice":
        letter = re.fullmatch(r"\(?\s*([A-Ja-j])\s*\)?", answer)
        if letter:
            return letter.group(1).upper()
    if len(answer) >= 2 and answer[0] == answer[-1] and answer[0] in "\"'":
        answer = answer[1:-1].strip()
    return answer


def _user_text(prompt: Any) -> str | None:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list | tuple):
        for message in prompt:
            if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
                return message["content"]
    return None


def _golds(ground_truth: Any) -> list[str] | None:
    if isinstance(ground_truth, str):
        return [ground_truth]
    if isinstance(ground_truth, list | tuple) and ground_truth and all(isinstance(g, str) for g in ground_truth):
        return list(ground_truth)
    return None


def docqa_row_to_sample(row: dict[str, Any], path: str, index: int) -> Sample:
    where = f"row {index}"
    for name in REQUIRED:
        if row.get(name) is None:
            raise DataError(path, where, name, "missing")
    source = row["data_source"]
    if not isinstance(source, str):
        raise DataError(path, where, "data_source", "expected a string")
    task = task_for_source(source)
    if task is None:
        known = ", ".join(p + "*" for p, _ in TASK_PREFIXES)
        raise DataError(path, where, "data_source", f"unknown source {source!r}; known prefixes: {known}")
    text = _user_text(row["prompt"])
    if text is None:
        raise DataError(path, where, "prompt", "no user message with text content")
    match = PROMPT_RE.search(text)
    if match is None:
        raise DataError(path, where, "prompt", "does not follow the template (<text>...</text>, question, 'Format your response as follows:')")
    document, question = match.group("document").strip("\n"), match.group("question").strip()
    if not document.strip() or not question:
        raise DataError(path, where, "prompt", "empty document or question")
    reward_model = row["reward_model"]
    golds = _golds(reward_model.get("ground_truth") if isinstance(reward_model, dict) else None)
    if golds is None:
        raise DataError(path, where, "reward_model.ground_truth", "expected a string or a list of strings")
    answers = [a for a in (strip_answer_sentence(g, task) for g in golds) if a]
    if not answers:
        raise DataError(path, where, "reward_model.ground_truth", "empty answer")
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
    if isinstance(extra.get("id"), str) and isinstance(extra.get("question"), str) and isinstance(extra.get("meta"), str):
        return exported_sample(row, extra, task, document, answers, path, where)
    item = extra.get("index", index)
    meta = {"source": source, "row": index, "ability": row.get("ability"),
            "extra_info": json.loads(json.dumps(extra, default=str))}
    return Sample(id=f"{source}-{item}", task=task, context=document, question=question, answers=answers, meta=meta)


def exported_sample(row: dict[str, Any], extra: dict[str, Any], task: str, document: str, answers: list[str],
                    path: str, where: str) -> Sample:
    """A row `longrl data export --format verl` wrote: the Sample again (question, choices, meta kept in extra_info)."""
    try:
        meta = json.loads(extra["meta"])
    except json.JSONDecodeError as exc:
        raise DataError(path, where, "extra_info.meta", f"malformed JSON: {exc.msg}") from None
    golds = list(row["reward_model"]["ground_truth"])
    return Sample(id=extra["id"], task=task, context=document, question=extra["question"],
                  answers=golds if all(isinstance(g, str) and g for g in golds) else answers,
                  choices=list(extra.get("choices") or []) or None, meta=meta if isinstance(meta, dict) else {})


@IMPORTERS.register("docqa-rl")
def import_docqa_rl(path: str, skip_bad: bool = False) -> Loaded:
    table = read_parquet_table(path)
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise DataError(str(path), "schema", missing[0], f"column missing (found: {', '.join(table.column_names)})")
    samples: list[Sample] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for index, row in enumerate(table.to_pylist()):
        try:
            sample = docqa_row_to_sample(row, str(path), index)
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
            continue
        if sample.id in seen:  # an index repeated across sources or rows: keep the row, make the id unique
            sample = Sample(**{**sample.to_dict(), "id": f"{sample.id}-row{index}"})
        seen.add(sample.id)
        samples.append(sample)
    return Loaded(samples, skipped)
