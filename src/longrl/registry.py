"""Name -> object registries: config names are resolved once, at the boundary.

    VERIFIERS = Registry("verifier")

    @VERIFIERS.register("choice")
    def verify_choice(prediction, golds): ...

    VERIFIERS.get("choice")      # the function
    VERIFIERS.get("choise")      # KeyError: unknown verifier 'choise'; known: choice, numeric, qa

Outside code can name an object as "package.module:attribute"; `get` imports it then.

`declared_names("longrl.rl.algos", "ADVANTAGES")` reads the names a module registers with
`@ADVANTAGES.register("...")` from its source, without importing it: `longrl ls` lists registries of
modules that import torch without paying for torch (a test checks it against the imported registry).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping filled by `register` decorators at import time."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered by {self._items[name]!r}")
        self._items[name] = obj

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        if ":" in name:
            return _import_object(name, self.kind)
        raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items or (isinstance(name, str) and ":" in name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def _import_object(spec: str, kind: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise KeyError(f"{kind} {spec!r}: cannot import module {module_name!r} ({exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise KeyError(f"{kind} {spec!r}: module {module_name!r} has no attribute {attr!r}") from exc


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
