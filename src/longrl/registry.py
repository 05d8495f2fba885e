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

`declared_names("longrl.rl.algos", "ADVANTAGES")` reads the names a longrl module registers with
`@ADVANTAGES.register("...")` from its source, without importing it: `longrl ls` lists registries of
modules that import torch without paying for torch (a test checks it against the imported registry).
"""

from __future__ import annotations

import ast
import importlib.util
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


def declared_names(module: str, registry: str) -> list[str]:
    """Names `module` registers with `@REGISTRY.register("name")` decorators, read from its source.

    The module itself is not imported (its parent packages are). Registrations made any other way
    (`REGISTRY.add(...)`, loops) are not seen: the registries listed this way use decorators only.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise KeyError(f"cannot find module {module!r}")
    with open(spec.origin, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), spec.origin)
    names = []
    for node in ast.walk(tree):
        for deco in getattr(node, "decorator_list", []):
            if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "register"
                    and isinstance(deco.func.value, ast.Name) and deco.func.value.id == registry
                    and len(deco.args) == 1 and isinstance(deco.args[0], ast.Constant)):
                names.append(str(deco.args[0].value))
    return sorted(names)
