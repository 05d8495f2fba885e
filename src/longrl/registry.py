"""Name -> object registries: config names are resolved once, at the boundary.

    VERIFIERS = Registry("verifier")

    @VERIFIERS.register("choice")
    def verify_choice(prediction, golds): ...

    VERIFIERS.get("choice")      # the function
    VERIFIERS.get("choise")      # KeyError: unknown verifier 'choise'; known: choice, numeric, qa

A name resolves only to an object registered in code: names from data rows, command-line flags
and config files are looked up, never imported. "package.module:attribute" is an unknown name
like any other, so a dataset row cannot make longrl import a module (a file placed next to the
data included).

Extending longrl: register your objects from your own Python program, then run the command line
from it, so what runs is exactly what you imported:

    # my_longrl.py
    import sys
    from longrl.cli import main
    from longrl.rewards.verifiers import VERIFIERS, Verdict

    @VERIFIERS.register("exact")
    def verify_exact(prediction, golds, opts):
        return Verdict(float(prediction in golds))

    sys.exit(main())             # python my_longrl.py score --input rows.jsonl --output scored.jsonl

There is no automatic plugin discovery (no entry points, no import by name): installing or
placing a package never changes what a longrl command runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping filled by `register` decorators (or `add`) at import time."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered by {self._items[name]!r}")
        self._items[name] = obj

    def get(self, name: str) -> T:
        """The object registered as `name`; KeyError naming the known ones otherwise."""
        if isinstance(name, str) and name in self._items:
            return self._items[name]
        raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
