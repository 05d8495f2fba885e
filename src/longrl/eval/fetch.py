"""Optional download of the benchmark files from the Hugging Face hub (`longrl eval --download`).

    fetch_missing(["hotpotqa", "docmath"], "data/docqa")   # writes data/docqa/hotpotqa.jsonl, ...

Never needed offline: the loaders read plain JSONL files, however they were obtained. This uses
the `datasets` library (not a longrl dependency: `pip install datasets`) and the hub ids in each
benchmark's spec: the five LongBench v1 subsets from THUDM/LongBench (test split), DocMath and
Frames from the evaluation sets QwenLong-L1 published (Tongyi-Zhiwen/docmath, Tongyi-Zhiwen/frames).
Each file is checked with the benchmark's own loader before it is moved into place.
"""

from __future__ import annotations

import json
from pathlib import Path

from longrl.errors import UserError
from longrl.eval.benchmarks import BENCHMARKS
from longrl.files import atomic_open


def fetch_missing(names: list[str], data_dir: str | None) -> list[Path]:
    """Download every named benchmark whose file is missing from `data_dir`; returns the files written."""
    if data_dir is None:
        raise UserError("--download needs --data-dir DIR (where the benchmark files go)")
    written = []
    for name in names:
        spec = BENCHMARKS.get(name)
        hub = getattr(spec, "hub", None)
        if hub is None or (Path(data_dir) / spec.filename).exists():
            continue
        written.append(fetch(name, data_dir))
    return written


def fetch(name: str, data_dir: str | Path) -> Path:
    """Download one benchmark from the hub into DATA_DIR/<name>.jsonl (atomic; validated by its loader)."""
    try:
        import datasets  # optional: the `datasets` library is not a dependency of longrl
    except ImportError:
        raise UserError("downloading benchmarks needs the `datasets` library: pip install datasets "
                        "(or place the JSONL files in the data directory yourself)") from None
    spec = BENCHMARKS.get(name)
    repo, config = spec.hub
    try:
        loaded = datasets.load_dataset(repo, config) if config else datasets.load_dataset(repo)
    except Exception as exc:  # noqa: BLE001 - hub/network failures come in many types; report and stop
        raise UserError(f"cannot download {name!r} from the hub ({repo}{'/' + config if config else ''}): {exc}") from None
    splits = list(loaded) if hasattr(loaded, "keys") else [None]
    split = "test" if "test" in splits else splits[0]
    rows = loaded[split] if split is not None else loaded
    path = Path(data_dir) / spec.filename
    records = [dict(row) for row in rows]
    for i, row in enumerate(records):
        spec.parse(row, f"{repo} ({split})", f"row {i}", spec.task)  # DataError if the hub rows are not in the expected format
    with atomic_open(path, "w") as fh:
        for row in records:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return path
