"""Read and write Samples as JSONL or parquet; generic JSONL row reading with located errors.

    samples = read_samples("train.jsonl").samples                 # DataError on the first bad row
    loaded = read_samples("train.jsonl", skip_bad=True)           # loaded.skipped lists the problems
    write_samples("out.parquet", samples)                         # atomic: temp file, then rename

Errors name the file, the line (JSONL, 1-based) or row (parquet, 0-based) and the field.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from longrl.data.schema import Sample, foreign_hint, sample_from_dict
from longrl.errors import DataError
from longrl.files import atomic_open
from longrl.limits import LimitError, load_json

T = TypeVar("T")


@dataclass
class Loaded:
    samples: list[Sample]
    skipped: list[str] = field(default_factory=list)  # one message per skipped row


def iter_jsonl(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Yield ("line N", decoded object) for each non-blank line.

    A line that is not UTF-8 or not JSON is yielded as a DataError (not raised), so callers
    can skip it and go on; `read_rows` raises it unless told to skip.
    """
    path = str(path)
    try:
        fh = open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb")  # a FIFO: no wait for a writer
    except OSError as exc:
        raise DataError(path, "open", None, f"cannot read file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
        fh.close()
        raise DataError(path, "file", None, "not a regular file (a device, FIFO or socket such as /dev/zero); name a file")
    with fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield f"line {line_no}", DataError(path, f"line {line_no}", None, f"not UTF-8 text ({exc.reason})")
                continue
            if not line.strip():
                continue
            try:
                yield f"line {line_no}", load_json(line)
            except json.JSONDecodeError as exc:
                yield f"line {line_no}", DataError(path, f"line {line_no}", None, f"malformed JSON: {exc.msg} at column {exc.colno}")
            except LimitError as exc:
                yield f"line {line_no}", DataError(path, f"line {line_no}", None, f"refused: JSON {exc}")


def read_rows(path: str | Path, parse: Callable[[Any, str, str], T], skip_bad: bool = False) -> tuple[list[T], list[str]]:
    """Parse every row of a JSONL file with `parse(obj, path, where)`; returns (rows, skipped messages)."""
    rows: list[T] = []
    skipped: list[str] = []
    for where, obj in iter_jsonl(path):
        try:
            if isinstance(obj, DataError):
                raise obj
            rows.append(parse(obj, str(path), where))
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
    return rows, skipped


def read_samples(path: str | Path, skip_bad: bool = False) -> Loaded:
    """Samples from a .jsonl or .parquet file, in file order; ids must be unique."""
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "open", None, "no such file")
    if path.suffix == ".parquet":
        samples, skipped = _read_parquet(path, skip_bad)
    else:
        samples, skipped = read_rows(path, sample_from_dict, skip_bad)
    seen: dict[str, int] = {}
    unique: list[Sample] = []
    for index, sample in enumerate(samples):
        if sample.id in seen:
            problem = f"duplicate id {sample.id!r} (also sample #{seen[sample.id] + 1})"
            if not skip_bad:
                raise DataError(str(path), f"sample #{index + 1}", "id", problem)
            skipped.append(f"{path}, sample #{index + 1}, field 'id': {problem}")
            continue
        seen[sample.id] = index
        unique.append(sample)
    return Loaded(unique, skipped)


def _read_parquet(path: Path, skip_bad: bool) -> tuple[list[Sample], list[str]]:
    table = read_parquet_table(path)
    hint = foreign_hint(table.column_names, str(path))
    if hint:                                     # a whole file of another format: say so once, before any row
        raise DataError(str(path), "schema", None, f"not a file of Samples (columns: {', '.join(table.column_names)}){hint}")
    samples: list[Sample] = []
    skipped: list[str] = []
    for index, row in enumerate(table.to_pylist()):
        try:
            meta = row.get("meta")
            if isinstance(meta, str):
                try:
                    row["meta"] = load_json(meta) if meta else {}
                except json.JSONDecodeError as exc:
                    raise DataError(str(path), f"row {index}", "meta", f"malformed JSON: {exc.msg}") from None
                except LimitError as exc:
                    raise DataError(str(path), f"row {index}", "meta", f"refused: JSON {exc}") from None
            samples.append(sample_from_dict(row, str(path), f"row {index}"))
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
    return samples, skipped


MAX_PARQUET_BYTES = 4 << 30   # what a parquet file may decode to (DocQA-RL-1.6K: ~0.5 GB); split larger ones


def read_parquet_table(path: str | Path, limit: int = MAX_PARQUET_BYTES):
    """A pyarrow Table; DataError if the file is missing, not readable parquet, or decodes past `limit` bytes.

    Compression and dictionary encoding let a 50 KB file stand for 20 GB of strings (one long value
    repeated in every row). The size is checked before anything is decoded: the pages' uncompressed size
    from the file's metadata, then what the dictionary-encoded string columns expand to, counted on the
    dictionaries and their indices (`decoded_bytes`, reading those columns as dictionaries) without
    expanding them.
    """
    import pyarrow.parquet as pq  # lazy: pyarrow is slow to import and only parquet files need it

    try:
        meta = pq.ParquetFile(str(path)).metadata
        pages = sum(meta.row_group(g).column(c).total_uncompressed_size
                    for g in range(meta.num_row_groups) for c in range(meta.num_columns))
        if pages > limit:
            raise DataError(str(path), "file", None, f"its pages decompress to {pages / (1 << 30):.1f} GiB, more than "
                                                     f"the {limit / (1 << 30):.0f} GiB longrl reads from one file; split it")
        strings = sorted({meta.schema.column(c).path for g in range(meta.num_row_groups) for c in range(meta.num_columns)
                          if meta.schema.column(c).physical_type == "BYTE_ARRAY"
                          and any("DICTIONARY" in e for e in meta.row_group(g).column(c).encodings)})
        encoded = pq.ParquetFile(str(path), read_dictionary=strings).read() if strings else None
        size = sum(decoded_bytes(chunk) for column in encoded.columns for chunk in column.chunks) if encoded else 0
        if size > limit:
            raise DataError(str(path), "file", None, f"it decodes to {size / (1 << 30):.1f} GiB of values (a small file "
                            f"whose dictionary repeats long strings), more than the {limit / (1 << 30):.0f} GiB longrl "
                            "reads from one file; split it")
        return pq.read_table(str(path))
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
        raise DataError(str(path), "file", None, f"not a readable parquet file ({exc})") from None


def decoded_bytes(array) -> int:
    """Bytes `array` takes once its dictionary-encoded parts are expanded (computed, not expanded)."""
    import pyarrow as pa  # lazy: as read_parquet_table
    import pyarrow.compute as pc

    if isinstance(array, pa.DictionaryArray):
        values = array.dictionary
        lengths = pc.binary_length(values) if pa.types.is_binary(values.type) or pa.types.is_string(values.type) \
            or pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type) else None
        if lengths is None:
            return array.nbytes
        total = pc.sum(pc.take(lengths, array.indices)).as_py() or 0
        return int(total) + 8 * len(array)                      # + offsets
    if isinstance(array, pa.ListArray | pa.LargeListArray):
        return decoded_bytes(array.flatten()) + 8 * len(array)
    if isinstance(array, pa.StructArray):
        return sum(decoded_bytes(child) for child in array.flatten()) + len(array)
    return array.nbytes


def write_samples(path: str | Path, samples: Iterable[Sample]) -> int:
    """Write atomically (.parquet or JSONL by extension); returns the number written."""
    path = Path(path)
    rows = [s.to_dict() for s in samples]
    if path.suffix == ".parquet":
        import pyarrow as pa  # lazy: pyarrow is slow to import and only parquet files need it
        import pyarrow.parquet as pq

        for row in rows:
            row["meta"] = json.dumps(row["meta"], sort_keys=True, ensure_ascii=False)
        table = pa.Table.from_pylist(rows, schema=_parquet_schema(pa))
        with atomic_open(path, "wb") as fh:
            pq.write_table(table, fh)
    else:
        write_jsonl(path, rows)
    return len(rows)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Atomic JSONL: one compact JSON object per line, keys in insertion order."""
    with atomic_open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _parquet_schema(pa):
    return pa.schema([
        ("id", pa.string()), ("task", pa.string()), ("context", pa.string()), ("question", pa.string()),
        ("answers", pa.list_(pa.string())), ("choices", pa.list_(pa.string())), ("meta", pa.string()),
    ])
