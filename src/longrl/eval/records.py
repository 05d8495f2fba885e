"""Per-sample results of one benchmark: `OUT/<benchmark>/samples.jsonl`, appended as items finish.

    log = SampleLog.open(out / "hotpotqa" / "samples.jsonl", samples=4)
    log.finished            # {item id: [4 rows]} from earlier runs: not asked again
    log.append_item(rows)   # one item's n rows in one write, flushed at once
    log.close()

One JSON object per completion: `id`, `sample` (0..n-1), `task`, `prompt_tokens`,
`truncated_tokens`, `completion`, `completion_tokens`, `finish` ("stop" | "length"),
`prediction`, `status`, `rule_score`, `judge_score` (null when not asked), `score`,
`answers`, plus the verifier metrics. An item's rows are written together and flushed, so a
killed run loses at most the items in flight. Opening tolerates what a kill leaves behind: a
torn last line is cut off and an item with fewer than n rows is dropped (and asked again);
the file is then rewritten atomically without them. Any other unreadable line is a DataError.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from longrl.errors import DataError
from longrl.files import atomic_write_text


@dataclass
class SampleLog:
    path: Path
    samples: int                                   # n rows per finished item
    finished: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # id -> rows sorted by sample
    repaired: int = 0                              # torn or incomplete rows dropped on open
    _fh: IO[str] | None = None

    @classmethod
    def open(cls, path: str | Path, samples: int) -> SampleLog:
        """Read finished items (repairing a torn tail) and open the file for appending."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        log = cls(path, samples)
        if path.exists():
            log._load()
        log._fh = open(path, "a", encoding="utf-8")
        return log

    def _load(self) -> None:
        raw = self.path.read_bytes()
        complete, _, torn = raw.rpartition(b"\n")
        lines = complete.split(b"\n") if complete else []
        dropped = 1 if torn.strip() else 0
        by_id: dict[str, dict[int, dict[str, Any]]] = {}
        order: list[str] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = self._parse(line, number)
            item = by_id.setdefault(row["id"], {})
            if not item:
                order.append(row["id"])
            item[row["sample"]] = row
        for item_id in order:
            rows = by_id[item_id]
            if sorted(rows) == list(range(self.samples)):
                self.finished[item_id] = [rows[j] for j in range(self.samples)]
            else:
                dropped += len(rows)
        self.repaired = dropped
        if dropped:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for rows in self.finished.values() for r in rows)
            atomic_write_text(self.path, text)

    def _parse(self, line: bytes, number: int) -> dict[str, Any]:
        where = f"line {number}"
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(str(self.path), where, None, f"unreadable results row ({exc}); only a torn last line is repaired "
                            "automatically: delete this file to evaluate the benchmark again") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise DataError(str(self.path), where, "id", "not a results row (an object with a string id)")
        sample = row.get("sample")
        if not isinstance(sample, int) or isinstance(sample, bool) or sample < 0:
            raise DataError(str(self.path), where, "sample", "expected a sample index >= 0")
        return row

    def append_item(self, rows: list[dict[str, Any]]) -> None:
        """Write one finished item's rows (all n) in one write and flush them to the OS."""
        if self._fh is None:
            raise RuntimeError(f"{self.path} is closed")
        if len(rows) != self.samples:
            raise ValueError(f"an item has {self.samples} rows, got {len(rows)}")
        self._fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self._fh.flush()
        self.finished[rows[0]["id"]] = rows

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
