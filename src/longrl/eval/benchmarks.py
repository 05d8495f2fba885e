"""The evaluation suites: loaders for the seven DocQA benchmarks and the held-out synthetic suites.

    suite = BENCHMARKS.get("hotpotqa").load("data/docqa")      # Suite(name, samples, version, ...)
    suite = BENCHMARKS.get("synthetic-1024").load(None, tokenizer=tok)   # built offline, no file needed
    samples = synthetic_suite(length=1024, n=100, seed=10_007, tokenizer=tok)

One JSONL file per benchmark in a data directory, in the row formats QwenLong-L1 evaluates on:

    docmath.jsonl   {"question", "paragraphs": [str, ...], "ground_truth": number | str, "question_id"?}
    frames.jsonl    {"Prompt", "Answer", "wiki_items": [{"title", "text"}, ...]}
    2wikimqa.jsonl, hotpotqa.jsonl, musique.jsonl, narrativeqa.jsonl, qasper.jsonl
                    LongBench v1 rows {"input" (the question), "context", "answers": [str, ...], "_id"?}

DocMath maps to the `docmath` task (numeric verifier), the multi-hop sets to `multihop` and the
others to `qa` (both use the free-text QA verifier). Document and question are stripped of
surrounding whitespace, as the published template does. How a document is assembled depends on
the evaluation protocol (`eval.protocol`):
- `published`, as the published scripts do: DocMath paragraphs joined with one newline, Frames
  articles as "title\\ntext" joined with one newline, and a DocMath gold written as Python writes
  the number (`str(2.5e-05)` = "2.5e-05", which the published rule then reads as 2.5);
- `strict`: paragraphs and articles stripped, empty ones skipped, joined with a blank line, and a
  DocMath gold written in plain decimals ("0.000025").
A malformed file raises DataError with file, line and field.
`longrl ls evals` lists the names; `longrl eval --download` fetches the files when the hub is reachable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from longrl.config.eval import SyntheticSuiteConfig
from longrl.data.io import read_rows
from longrl.data.schema import Sample
from longrl.data.synthetic import GENERATOR_VERSION, synthesize
from longrl.errors import DataError, UserError
from longrl.registry import Registry

SYNTHETIC_PREFIX = "synthetic-"
SYNTHETIC_RE = re.compile(r"^synthetic-(\d+)$")


@dataclass(frozen=True)
class Suite:
    """One benchmark's items, ready to evaluate."""

    name: str
    samples: list[Sample]
    version: str              # of the loader/generator; recorded in summary.json
    display: str              # column header in the results table
    source: str | None = None  # the file read (None = built in memory)
    sha256: str | None = None  # of that file, first 16 hex digits


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    display: str                                   # column header, as in the paper's main table
    task: str                                      # Sample.task of its items
    version: str
    parse: Callable[[Any, str, str, str, str], Sample] | None  # (row, path, where, task, protocol) -> Sample; None = built, not read
    hub: tuple[str, str | None] | None = None      # (dataset repo, config) for `longrl eval --download`

    @property
    def filename(self) -> str:
        return f"{self.name}.jsonl"

    def load(self, data_dir: str | Path | None, synthetic=None, tokenizer=None, protocol: str = "strict") -> Suite:
        """Read DATA_DIR/<name>.jsonl (DataError on a bad row or duplicate id), documents built as `protocol` does."""
        if data_dir is None:
            raise UserError(f"benchmark {self.name!r} reads {self.filename} from a data directory: pass --data-dir DIR "
                            "(or set eval.data_dir); `longrl eval --download` fetches the files when the hub is reachable")
        path = Path(data_dir) / self.filename
        if not path.exists():
            raise DataError(str(path), "open", None, f"no such file; benchmark {self.name!r} reads {self.filename} from the data directory")
        samples, _ = read_rows(path, lambda row, p, where: self.parse(row, p, where, self.task, protocol))
        if not samples:
            raise DataError(str(path), "file", None, f"no items: benchmark {self.name!r} would score 0 on nothing and "
                            "pull the average down; fill the file, or drop the benchmark from --benchmarks / eval.benchmarks")
        check_unique_ids(samples, str(path))
        return Suite(self.name, samples, self.version, self.display, str(path), file_digest(path))


class BenchmarkRegistry(Registry[BenchmarkSpec]):
    """BENCHMARKS: the registered names plus `synthetic-<length>` for any length."""

    def get(self, name: str) -> BenchmarkSpec:
        match = SYNTHETIC_RE.match(name)
        if match:
            return SyntheticSpec(int(match.group(1)))
        return super().get(name)

    def __contains__(self, name: object) -> bool:
        return (isinstance(name, str) and SYNTHETIC_RE.match(name) is not None) or super().__contains__(name)

    def names(self) -> list[str]:
        return super().names() + [f"{SYNTHETIC_PREFIX}<length>"]


@dataclass(frozen=True)
class SyntheticSpec:
    """A held-out synthetic suite at one document length (tokens of the evaluated model's tokenizer)."""

    length: int

    @property
    def name(self) -> str:
        return f"{SYNTHETIC_PREFIX}{self.length}"

    def load(self, data_dir: str | Path | None = None, synthetic=None, tokenizer=None, protocol: str = "strict") -> Suite:
        """Build the suite (no file is read): `synthetic` sizes it, `tokenizer` counts its prompt lengths."""
        cfg = synthetic or SyntheticSuiteConfig()
        samples = synthetic_suite(self.length, cfg.n, cfg.seed, cfg.tasks, tokenizer)
        version = f"{GENERATOR_VERSION};seed={cfg.seed};tasks={','.join(cfg.tasks)}"
        return Suite(self.name, samples, version, f"Synth-{self.length}")


def synthetic_suite(length: int, n: int, seed: int, tasks: list[str] | None = None, tokenizer=None) -> list[Sample]:
    """`n` held-out synthetic items with prompts of about `length` tokens.

    Args:
        length: target prompt length in tokens of `tokenizer` (chat template included).
        n: number of items (families round-robin).
        seed: generator seed; use one no training source uses, so the items are unseen.
        tasks: synthetic families (default docmath, multihop, choice).
        tokenizer: the evaluated model's tokenizer (required: it counts the lengths).
    Returns:
        The samples, byte-identical for identical arguments.
    """
    if length < 32:
        raise UserError(f"synthetic suite length {length} is too short; use at least 32 tokens (e.g. synthetic-1024)")
    return synthesize(tasks or ["docmath", "multihop", "choice"], n=n, length=length, seed=seed, tokenizer=tokenizer)


def check_unique_ids(samples: list[Sample], path: str) -> None:
    seen: dict[str, int] = {}
    for index, sample in enumerate(samples):
        if sample.id in seen:
            raise DataError(path, f"item #{index + 1}", "id", f"duplicate id {sample.id!r} (also item #{seen[sample.id] + 1}); "
                            "results are keyed by id, so ids must be unique")
        seen[sample.id] = index


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


# ---- row parsers -----------------------------------------------------------------------------

def _text(row: dict, key: str, path: str, where: str) -> str:
    if key not in row or row[key] is None:
        raise DataError(path, where, key, "missing")
    value = row[key]
    if not isinstance(value, str):
        raise DataError(path, where, key, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(path, where, key, "empty")
    return value.strip()


def _object(row: Any, path: str, where: str) -> dict:
    if not isinstance(row, dict):
        raise DataError(path, where, None, f"expected a JSON object, got {type(row).__name__}")
    return row


def _row_id(row: dict, keys: tuple[str, ...], prefix: str, where: str) -> str:
    for key in keys:
        value = row.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return f"{prefix}-{where.split()[-1]}"  # "line 7" -> "docmath-7": stable as long as the file is


def _number_text(value: Any, path: str, where: str, key: str, protocol: str) -> str:
    if isinstance(value, bool) or value is None:
        raise DataError(path, where, key, "missing" if value is None else "expected a number, got a boolean")
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise DataError(path, where, key, f"expected a finite number, got {value}")
        if protocol == "published":
            return str(value)  # as the published script writes it into "Therefore, the answer is {gold}."
        if isinstance(value, int) or value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")  # 1e-05 -> "0.00001": no exponent for the verifier to parse
    if isinstance(value, str) and value.strip():
        return value if protocol == "published" else value.strip()
    raise DataError(path, where, key, f"expected a number or a non-empty string, got {type(value).__name__}")


def parse_docmath(row: Any, path: str, where: str, task: str, protocol: str = "strict") -> Sample:
    row = _object(row, path, where)
    question = _text(row, "question", path, where)
    paragraphs = row.get("paragraphs")
    if paragraphs is None:
        raise DataError(path, where, "paragraphs", "missing")
    if not isinstance(paragraphs, list) or not paragraphs:
        raise DataError(path, where, "paragraphs", "expected a non-empty list of strings")
    if not all(isinstance(p, str) for p in paragraphs):
        raise DataError(path, where, "paragraphs", "every paragraph must be a string")
    if protocol == "published":
        context = "\n".join(paragraphs).strip()
    else:
        context = "\n\n".join(p.strip() for p in paragraphs if p.strip())
    if not context:
        raise DataError(path, where, "paragraphs", "all paragraphs are empty")
    if "ground_truth" not in row:
        raise DataError(path, where, "ground_truth", "missing")
    gold = _number_text(row["ground_truth"], path, where, "ground_truth", protocol)
    return Sample(_row_id(row, ("question_id", "id"), "docmath", where), task, context, question, [gold],
                  meta={"source": "docmath"})


def parse_frames(row: Any, path: str, where: str, task: str, protocol: str = "strict") -> Sample:
    row = _object(row, path, where)
    question = _text(row, "Prompt", path, where)
    answer = _text(row, "Answer", path, where)
    items = row.get("wiki_items")
    if items is None:
        raise DataError(path, where, "wiki_items", "missing")
    if not isinstance(items, list) or not items:
        raise DataError(path, where, "wiki_items", "expected a non-empty list of {title, text} objects")
    blocks, published = [], []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not isinstance(item.get("title", ""), str):
            raise DataError(path, where, f"wiki_items[{i}]", "expected an object with string `title` and `text`")
        published.append(f"{item.get('title', '')}\n{item['text']}")
        title, text = (item.get("title") or "").strip(), item["text"].strip()
        if text:
            blocks.append(f"{title}\n{text}" if title else text)
    if not blocks:
        raise DataError(path, where, "wiki_items", "every article text is empty")
    context = "\n".join(published).strip() if protocol == "published" else "\n\n".join(blocks)
    return Sample(_row_id(row, ("id", "Unnamed: 0", "index"), "frames", where), task, context, question,
                  [answer], meta={"source": "frames"})


def parse_longbench(row: Any, path: str, where: str, task: str, protocol: str = "strict") -> Sample:
    row = _object(row, path, where)
    question = _text(row, "input", path, where)
    context = _text(row, "context", path, where)
    answers = row.get("answers")
    if answers is None:
        raise DataError(path, where, "answers", "missing")
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers:
        raise DataError(path, where, "answers", "expected a non-empty list of strings")
    if not all(isinstance(a, str) for a in answers):
        raise DataError(path, where, "answers", "every answer must be a string")
    golds = [a.strip() for a in answers if a.strip()]
    if not golds:
        raise DataError(path, where, "answers", "every answer is empty")
    name = Path(path).stem
    return Sample(_row_id(row, ("_id", "id"), name, where), task, context, question, golds, meta={"source": name})


BENCHMARKS = BenchmarkRegistry("evaluation benchmark")
_V = "longrl-docqa/1"
BENCHMARKS.add("docmath", BenchmarkSpec("docmath", "DocMath", "docmath", _V, parse_docmath, ("Tongyi-Zhiwen/docmath", None)))
BENCHMARKS.add("frames", BenchmarkSpec("frames", "Frames", "qa", _V, parse_frames, ("Tongyi-Zhiwen/frames", None)))
for _name, _display, _task in [("2wikimqa", "2Wiki", "multihop"), ("hotpotqa", "HotpotQA", "multihop"),
                               ("musique", "MuSiQue", "multihop"), ("narrativeqa", "NarrativeQA", "qa"),
                               ("qasper", "Qasper", "qa")]:
    BENCHMARKS.add(_name, BenchmarkSpec(_name, _display, _task, _V, parse_longbench, ("THUDM/LongBench", _name)))


def load_suites(names: list[str], data_dir: str | Path | None, synthetic=None, limit: int | None = None,
                tokenizer=None, protocol: str = "strict") -> dict[str, Suite]:
    """Load each named benchmark (first `limit` items), in the given order; `tokenizer` sizes synthetic
    suites, documents are built as `protocol` does."""
    suites = {}
    for name in names:
        try:
            spec = BENCHMARKS.get(name)
        except KeyError as exc:
            raise UserError(str(exc.args[0])) from None
        suite = spec.load(data_dir, synthetic, tokenizer, protocol)
        if limit is not None:
            suite = Suite(suite.name, suite.samples[:limit], suite.version, suite.display, suite.source, suite.sha256)
        suites[name] = suite
    return suites
