"""Console output: progress bars on long work, tables, messages. Everything goes to stderr
except results a command is asked for (tables of numbers go to stdout)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def secondary_rank() -> bool:
    """A torchrun process other than rank 0: it prints no progress and no messages (rank 0 speaks for all)."""
    return os.environ.get("RANK", "0") != "0"


def progress_enabled(mode: str = "auto") -> bool:
    if mode == "none" or os.environ.get("LONGRL_NO_PROGRESS") or secondary_rank():
        return False
    return mode in ("rich", "plain") or sys.stderr.isatty()


@contextlib.contextmanager
def progress_bar(total: int | None, description: str, mode: str = "auto") -> Iterator[Any]:
    """Yields `advance(n=1)`; draws a rich bar on a terminal, stays silent otherwise."""
    if not progress_enabled(mode):
        yield lambda n=1: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=stderr_console(), transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[_fmt(v) for v in row])
    stdout_console().print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def info(message: str) -> None:
    if not secondary_rank():
        stderr_console().print(message, markup=False)
