"""Bounds on structured text from outside: JSON nesting, YAML alias expansion, lone surrogates, file size.

    obj = load_json(line)            # LimitError (a ValueError) past MAX_DEPTH levels, or a lone surrogate
    tree = load_yaml(text)           # LimitError for an alias bomb, a recursive alias or deep nesting
    raw = read_small_file(path)      # LimitError for a device, FIFO or socket, or a file past MAX_SMALL_FILE_BYTES

Python's JSON decoder recurses once per level, so a line of 100,000 `[` raises RecursionError,
and a tree a few hundred levels deep parses but breaks whatever walks it next. YAML aliases
share one object, so nine lines can describe 9^7 list elements that load in no time and then
take minutes and gigabytes to copy, validate or dump. Both readers refuse such input up front
with a `LimitError`; callers turn it into a DataError or ConfigError naming the file and line.

JSON may spell a UTF-16 surrogate on its own (`"\\ud800"`); Python decodes it into a string that no
UTF-8 file, tokenizer or HTTP reply can carry, so the failure would come later, far from its cause
(after scoring, in an export, inside a tokenizer). `load_json` refuses it where it is read;
`replace_lone_surrogates` turns them into U+FFFD in text a server sent (model output, not input to refuse).
Config files, run records and checkpoint metadata are small: `read_small_file` reads at most
MAX_SMALL_FILE_BYTES and only from a regular file, so a `config.yaml` linked to `/dev/zero` or a FIFO
is an error, not a read that never ends.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import yaml

MAX_DEPTH = 64          # containers nested inside each other (configs and samples need a handful)
MAX_YAML_NODES = 100_000  # values of a YAML document once every alias is expanded
MAX_SMALL_FILE_BYTES = 16 << 20  # configs, state.json, manifests, adapter configs: a few KB in practice
_SURROGATE_ESCAPE = r"\\u[dD][89a-fA-F]"   # how JSON text spells half of a UTF-16 pair
_SURROGATE_ESCAPE_RE, _SURROGATE_ESCAPE_BYTES_RE = re.compile(_SURROGATE_ESCAPE), re.compile(_SURROGATE_ESCAPE.encode())
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class LimitError(ValueError):
    """Input past a bound of this module; the message says which bound."""


def load_json(text: str | bytes) -> Any:
    """`json.loads` that raises LimitError (never RecursionError) on nesting past MAX_DEPTH, and on a
    string holding a lone surrogate (`check_no_surrogates`)."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise LimitError(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # Python's own bound: an integer of more than 4300 digits
        digits = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
        raise LimitError(f"holds an integer of more than {digits} digits") from None
    check_depth(obj)
    if isinstance(text, str):                # a pair decodes to one character; only a lone half stays
        suspect = _SURROGATE_ESCAPE_RE.search(text) or _SURROGATE_RE.search(text)
    else:
        suspect = _SURROGATE_ESCAPE_BYTES_RE.search(text)
    if suspect:
        check_no_surrogates(obj)
    return obj


def check_no_surrogates(obj: Any) -> None:
    """LimitError if a string (key or value) of `obj` holds a lone UTF-16 surrogate (iterative)."""
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            found = _SURROGATE_RE.search(node)
            if found:
                raise LimitError(f"holds a lone surrogate \\u{ord(found.group()):04x} (half of a UTF-16 pair, not a "
                                 "character): not valid Unicode text")
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)


def replace_lone_surrogates(obj: Any) -> Any:
    """`obj` with every lone surrogate in its strings replaced by U+FFFD (a copy where anything changed)."""
    if isinstance(obj, str):
        return _SURROGATE_RE.sub("\ufffd", obj) if _SURROGATE_RE.search(obj) else obj
    if isinstance(obj, dict):
        return {replace_lone_surrogates(k): replace_lone_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [replace_lone_surrogates(v) for v in obj]
    return obj


def read_small_file(path: str | os.PathLike, limit: int = MAX_SMALL_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes.

    Raises LimitError for anything else (a device such as /dev/zero, a FIFO, a socket, a file past
    `limit`), OSError when it cannot be opened. The size is checked on the open file, and no more than
    `limit` + 1 bytes are ever read, so a file that grows meanwhile is refused too.
    """
    fd = os.open(Path(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO without a writer: no wait
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LimitError("is not a regular file (a device, FIFO or socket); name a file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise LimitError(f"is larger than {limit:,} bytes; refused")
    return data


def check_depth(obj: Any, limit: int = MAX_DEPTH) -> None:
    """LimitError if lists/dicts nest deeper than `limit` (iterative: no recursion of its own)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list | tuple) else None
        if children is None:
            continue
        if depth > limit:
            raise LimitError(f"nested deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children)


class _DepthBoundLoader(yaml.SafeLoader):
    """SafeLoader whose composer stops past MAX_DEPTH (PyYAML composes nodes recursively)."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise LimitError(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` with nesting bounded while composing, then `check_expansion`;
    YAML syntax errors stay yaml.YAMLError."""
    loader = _DepthBoundLoader(text)
    try:
        data = loader.get_single_data()
    except RecursionError:
        raise LimitError(f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
    check_expansion(data)
    return data


def check_expansion(obj: Any, max_nodes: int = MAX_YAML_NODES, max_depth: int = MAX_DEPTH) -> int:
    """Count the values of `obj` as if every shared (aliased) container were copied out.

    Each distinct container is sized once (memoised by identity), so a bomb is measured in
    time linear to its text. Raises LimitError past `max_nodes` or `max_depth`, or for a
    container that contains itself (a recursive alias); returns the expanded count.
    """
    if not isinstance(obj, dict | list):
        return 1
    sizes: dict[int, int] = {}
    on_path: set[int] = set()   # containers whose children are being sized: meeting one again is a cycle
    stack: list[tuple[Any, int, bool]] = [(obj, 1, False)]  # (container, depth, children sized yet?)
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        if done:
            size = 1 + sum(sizes.get(id(c), 1) for c in children)
            if size > max_nodes:
                raise LimitError(f"expands to more than {max_nodes:,} values (YAML aliases repeat a large block)")
            sizes[key] = size
            on_path.discard(key)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise LimitError("a YAML alias refers to a block that contains it (recursive alias)")
        if depth > max_depth:
            raise LimitError(f"nested deeper than {max_depth} levels")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if isinstance(c, dict | list))
    return sizes[id(obj)]
