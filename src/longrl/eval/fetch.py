"""Optional download of the benchmark files from the Hugging Face hub (`longrl eval --download`).

    fetch_missing(["hotpotqa", "docmath"], "data/docqa")   # writes data/docqa/hotpotqa.jsonl, ...

Never needed offline: the loaders read plain JSONL files, however they were obtained. The rows come
from the parquet files the hub itself serves for every public dataset (its dataset viewer's
conversion, branch `refs/convert/parquet`), read with pyarrow: no `datasets` library and no dataset
script (LongBench's, which `datasets` 4+ no longer runs). Each benchmark's spec names its hub id:
the five LongBench v1 subsets from THUDM/LongBench (config = the subset, split test), DocMath and
Frames from the evaluation sets QwenLong-L1 published (Tongyi-Zhiwen/docmath, Tongyi-Zhiwen/frames;
their test split, else their only one).

The file list comes from the dataset viewer's `/parquet?dataset=REPO&config=CONFIG` listing; when
that is unavailable, the branch's files are read directly (`{config}/{split}/0000.parquet`, 0001, ...).
`HF_TOKEN` (gated datasets) is sent as a Bearer token; `HF_ENDPOINT` and `LONGRL_DATASETS_SERVER`
point at a mirror. `HF_HUB_OFFLINE=1` refuses at once. Each file is checked with the benchmark's own
loader before it is moved into place (written atomically), so a failed download leaves nothing.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from longrl.errors import UserError
from longrl.eval.benchmarks import BENCHMARKS
from longrl.files import atomic_open

HUB = "https://huggingface.co"
DATASETS_SERVER = "https://datasets-server.huggingface.co"
TIMEOUT_S = 120.0
MAX_SHARDS = 1000


class Hub:
    """Where the parquet files come from: the hub and its dataset viewer (or mirrors of them)."""

    def __init__(self, endpoint: str | None = None, viewer: str | None = None, token: str | None = None):
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or HUB).rstrip("/")
        self.viewer = (viewer or os.environ.get("LONGRL_DATASETS_SERVER") or DATASETS_SERVER).rstrip("/")
        token = token if token is not None else os.environ.get("HF_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(headers=headers, timeout=TIMEOUT_S, follow_redirects=True)

    def get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response | None:
        """The response, or None for a 404; UserError for anything else that fails."""
        try:
            response = self.client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise UserError(f"cannot reach {url.split('?')[0]}: {exc}") from None
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise UserError(f"{url}: HTTP {response.status_code} (a gated dataset: accept its terms on the hub "
                            "and set HF_TOKEN)")
        if response.status_code != 200:
            raise UserError(f"{url}: HTTP {response.status_code}")
        return response

    def parquet_urls(self, repo: str, config: str) -> dict[str, list[str]]:
        """split -> parquet file URLs of one config, from the dataset viewer's listing ({} if it has none)."""
        response = self.get(f"{self.viewer}/parquet", {"dataset": repo, "config": config})
        if response is None:
            return {}
        try:
            files = response.json()["parquet_files"]
            splits: dict[str, list[str]] = {}
            for entry in files:
                if entry.get("config", config) == config:
                    splits.setdefault(entry["split"], []).append(entry["url"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{self.viewer}/parquet?dataset={repo}: unexpected listing {response.text[:200]!r}") from None
        return splits

    def branch_shards(self, repo: str, config: str, split: str) -> list[bytes]:
        """The files `{config}/{split}/0000.parquet`, 0001, ... of the `refs/convert/parquet` branch."""
        base = f"{self.endpoint}/datasets/{repo}/resolve/{quote('refs/convert/parquet', safe='')}/{config}/{split}"
        shards = []
        for k in range(MAX_SHARDS):
            response = self.get(f"{base}/{k:04d}.parquet")
            if response is None:
                break
            shards.append(response.content)
        return shards

    def close(self) -> None:
        self.client.close()


def read_parquet_rows(blobs: list[bytes], source: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq  # lazy: pyarrow is slow to import and only downloads need it

    rows: list[dict[str, Any]] = []
    for blob in blobs:
        try:
            rows += pq.read_table(io.BytesIO(blob)).to_pylist()
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a file that is not parquet
            raise UserError(f"{source}: not a readable parquet file ({exc})") from None
    return rows


def download_rows(hub: Hub, repo: str, config: str | None) -> tuple[str, list[dict[str, Any]]]:
    """(split, rows) of a hub dataset: its test split, else its only one; listed first, then read from the branch."""
    config = config or "default"
    splits = hub.parquet_urls(repo, config)
    if splits:
        split = "test" if "test" in splits else sorted(splits)[0]
        blobs = []
        for url in splits[split]:
            response = hub.get(url)
            if response is None:
                raise UserError(f"{url}: listed by the dataset viewer but not found (HTTP 404)")
            blobs.append(response.content)
        return split, read_parquet_rows(blobs, f"{repo}/{config}/{split}")
    for split in ("test", "train", "validation"):
        blobs = hub.branch_shards(repo, config, split)
        if blobs:
            return split, read_parquet_rows(blobs, f"{repo}/{config}/{split}")
    raise UserError(f"{repo} (config {config}): the hub serves no parquet files for it (neither the dataset viewer "
                    f"listing nor {hub.endpoint}/datasets/{repo}/tree/refs%2Fconvert%2Fparquet); place the JSONL file "
                    "in the data directory yourself")


def fetch_missing(names: list[str], data_dir: str | None, hub: Hub | None = None) -> list[Path]:
    """Download every named benchmark whose file is missing from `data_dir`; returns the files written."""
    if data_dir is None:
        raise UserError("--download needs --data-dir DIR (where the benchmark files go)")
    wanted = [n for n in names if getattr(BENCHMARKS.get(n), "hub", None) is not None
              and not (Path(data_dir) / BENCHMARKS.get(n).filename).exists()]
    if not wanted:
        return []
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise UserError(f"--download: HF_HUB_OFFLINE is set, so {', '.join(wanted)} cannot be fetched; unset it, or "
                        "place the JSONL files in the data directory yourself")
    own = hub is None
    hub = hub or Hub()
    try:
        return [fetch(name, data_dir, hub) for name in wanted]
    finally:
        if own:
            hub.close()


def fetch(name: str, data_dir: str | Path, hub: Hub) -> Path:
    """Download one benchmark into DATA_DIR/<name>.jsonl (atomic; validated by its loader first)."""
    spec = BENCHMARKS.get(name)
    repo, config = spec.hub
    split, records = download_rows(hub, repo, config)
    for i, row in enumerate(records):
        spec.parse(row, f"{repo} ({split})", f"row {i}", spec.task)  # DataError if the hub rows are not in the expected format
    path = Path(data_dir) / spec.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as fh:
        for row in records:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return path
