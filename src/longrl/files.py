"""Atomic file output: write to a temporary file beside the target, rename when complete.

A crash, Ctrl-C or a bad row half-way through leaves the previous file (or none) in place,
never a half-written one; `remove_leftovers` clears the temporaries a kill left behind. Outputs
get the modes plain `open`/`mkdir` would give under the umask, and every refusal of the system
(a read-only place, a file in the way, a full disk) is an OutputError naming the path, also when a
library reports it in its own error type (safetensors, torch.save: `write_failure`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from longrl.errors import OutputError

# What a killed atomic write leaves beside its target: `.NAME.XXXX.tmp` (file or folder) and
# `.NAME.old` (the folder atomic_dir was replacing). Only longrl writes names of this shape.
LEFTOVER = re.compile(r"^\..+\.(tmp|old)$")
# errno values a write into the output itself can fail with (anything else in the caller's block is the caller's).
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file next to `path`; on success fsync and rename it over `path`.

    The file gets the mode a plain `open` would give (0666 less the umask). OutputError (exit 2)
    when the system refuses: a folder at `path`, a file where a parent folder belongs, a
    read-only location, a full disk. The previous `path` (or none) is left in place.
    """
    path = Path(path)
    binary = "b" in mode
    if path.is_dir():
        raise OutputError(str(path), "it is a directory; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~umask())
    except OSError as exc:
        raise OutputError(str(path), explain(path, exc)) from None
    finishing = False
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            yield fh
            finishing = True
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        failure = write_failure(exc, finishing)
        if failure is not None:
            raise OutputError(str(path), explain(path, failure)) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name; rename it to `path` when the block succeeds.

    An existing `path` is replaced only after the new one is complete; a file at `path` is
    refused (OutputError), never replaced. The folder and everything in it get the modes
    `mkdir`/`open` give under the umask (safetensors writes its files 0600 whatever the umask).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(str(path), "a file of that name exists; name a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise OutputError(str(path), explain(path, exc)) from None
    finishing = False
    try:
        yield tmp
        finishing = True
        publish_dir(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        failure = write_failure(exc, finishing)
        if failure is not None:
            raise OutputError(str(path), explain(path, failure)) from None
        raise


# How libraries report a write the system refused inside their own error types: safetensors (Rust)
# "Error while serializing: I/O error: No space left on device (os error 28)"; torch.save's zip writer
# "PytorchStreamWriter failed writing file ..." or "[enforce fail at inline_container.cc] . unexpected pos".
_RUST_OS_ERROR_RE = re.compile(r"\(os error (\d+)\)")
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter failed writing", "unexpected pos")


def write_failure(exc: BaseException, finishing: bool = False) -> OSError | None:
    """The OSError to report for an exception raised while writing an output, or None (not a refused write).

    An OSError counts when it is a write errno (WRITE_ERRNOS) or came while finishing (fsync, rename);
    a library's own error counts when it wraps an OS error code or is torch's failed-write message.
    """
    if isinstance(exc, OSError):
        return exc if finishing or exc.errno in WRITE_ERRNOS else None
    if not isinstance(exc, Exception):
        return None
    text = str(exc)
    match = _RUST_OS_ERROR_RE.search(text)
    if match:
        code = int(match.group(1))
        return OSError(code, os.strerror(code))
    if isinstance(exc, RuntimeError) and any(marker in text for marker in _TORCH_WRITE_FAILURES):
        return OSError(errno.EIO, "the write stopped part-way (is the disk full?)")
    return None


def publish_dir(tmp: Path, path: Path) -> None:
    """Rename the finished directory `tmp` to `path`, with the modes the umask gives.

    An existing `path` is set aside first and removed only once the new one is in place, so a
    kill at any point leaves a complete `path` (old or new) or the set-aside copy, never neither.
    """
    follow_umask(tmp)
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def follow_umask(root: Path) -> None:
    """Give `root` and everything under it `mkdir`/`open` modes under the umask (executables stay executable)."""
    mask = umask()
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for name in files:
            file = os.path.join(folder, name)
            if not os.path.islink(file):
                executable = os.stat(file).st_mode & 0o111
                os.chmod(file, (0o777 if executable else 0o666) & ~mask)


def remove_leftovers(directory: str | os.PathLike) -> list[str]:
    """Delete what killed atomic writes left directly inside `directory`; returns the names removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in sorted(directory.iterdir()):
        if LEFTOVER.match(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            removed.append(entry.name)
    return removed


def cache_root() -> Path:
    """longrl's cache folder: `$XDG_CACHE_HOME/longrl`, else `~/.cache/longrl` (judge verdicts, packaged models)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "longrl"


def make_dirs(path: str | os.PathLike) -> Path:
    """`mkdir -p` that raises OutputError (naming the path and the reason) instead of OSError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(str(path), explain(path, exc)) from None
    return path


def explain(path: Path, exc: OSError) -> str:
    """The reason an output could not be written, in words that point at the fix."""
    if isinstance(exc, FileExistsError) and path.exists() and not path.is_dir():
        return "a file of that name exists; name a directory"
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir() and parent != path:
                return f"{parent} is a file, not a directory"
            break
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{reason} (choose a location you can write to)"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{reason} (free some space or choose another disk)"
    return reason


def umask() -> int:
    """The process umask, read without changing it where the system allows (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it and put it back
    os.umask(mask)
    return mask
