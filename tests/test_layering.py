"""The layering of design.md, enforced: every import between longrl's packages runs one way.

The allowed arrows are written once, below (ARROWS); a package may import the foundation, the
packages its arrows name and, transitively, what those may import. Imports inside functions count
like any other, and each must say why it is there (a comment on its line or right above its block:
start-up time or an optional dependency). Nothing imports the command line, and there is no cycle.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "longrl"

# Top-level modules every unit may import; they import nothing but each other.
FOUNDATION = {"__init__", "errors", "limits", "registry", "files", "console", "http", "checkpoint", "tracking", "trackers",
              "metric_names", "bench", "report", "secrets"}
# unit -> the units it may import directly (design.md, "Layout and layering").
ARROWS = {
    "config": set(),
    "data": {"config"},
    "models": {"config"},
    "engine": {"config", "models"},
    "rewards": {"config", "data"},
    "rl": {"engine", "models", "rewards", "data"},
    "sft": {"engine", "models", "rewards", "data"},
    "eval": {"engine", "models", "rewards", "data"},
    "serve": {"engine", "models", "data"},        # `longrl serve`: the engine behind an HTTP API
    "curriculum": {"rl", "data"},
    "pretrain": {"sft", "eval"},
    "pipeline": {"curriculum", "sft", "eval", "rl"},
    "demo": {"pipeline"},
    "cli": {"demo", "pipeline", "pretrain", "serve"},   # and, transitively, everything
}


@cache
def allowed(unit: str) -> frozenset[str]:
    """What `unit` may import: itself, the foundation, its arrows and theirs."""
    out = {unit, *FOUNDATION}
    for target in ARROWS.get(unit, ()):
        out |= allowed(target)
    return frozenset(out)


def unit_of(module: str) -> str:
    """longrl.rl.trainer -> rl; longrl.errors -> errors; longrl -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path):
    """(imported longrl module, line, inside a function) for every import statement of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    nested = {id(node) for fn in functions for node in ast.walk(fn) if node is not fn}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            yield name, node, id(node) in nested


def files():
    return sorted(SRC.rglob("*.py"))


def violations(extra: tuple[str, str] | None = None) -> list[str]:
    """Every forbidden arrow; `extra` = (importer module, imported module) adds one more import to check."""
    found = []
    pairs = [(module_name(p), name, f"{p.relative_to(SRC.parent)}:{node.lineno}")
             for p in files() for name, node, _ in imports_of(p) if name.startswith("longrl")]
    if extra:
        pairs.append((extra[0], extra[1], "<extra>"))
    for importer, imported, where in pairs:
        src, dst = unit_of(importer), unit_of(imported)
        if dst not in allowed(src) and (SRC / dst).exists() | (SRC / f"{dst}.py").exists():
            found.append(f"{where}: {importer} -> {imported} ({src} may not import {dst})")
    return found


def test_every_import_follows_the_layering():
    assert not violations(), "\n".join(violations())


@pytest.mark.parametrize("importer,imported", [
    ("longrl.rewards.hybrid", "longrl.models.loading"),     # rewards never import models
    ("longrl.eval.harness", "longrl.rl.trainer"),           # eval needs no training
    ("longrl.sft.trainer", "longrl.rl.sampler"),            # SFT needs no RL
    ("longrl.data.synthetic", "longrl.models.tokenizer"),   # the old cycle
    ("longrl.config.loading", "longrl.rl.algos"),           # config imports no stage
    ("longrl.tracking", "longrl.config"),                   # the foundation imports nothing above it
    ("longrl.rl.trainer", "longrl.cli.args"),               # nothing imports the command line
    ("longrl.rl.trainer", "longrl.serve.server"),           # the RL loop talks to servers over HTTP only
    ("longrl.serve.server", "longrl.rewards.judge"),        # serving needs no stage above the engine
])
def test_a_forbidden_import_is_caught(importer, imported):
    assert violations((importer, imported)), f"{importer} -> {imported} should be forbidden"


def test_the_arrows_name_real_units():
    units = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    units |= {p.stem for p in SRC.glob("*.py")}
    named = set(ARROWS) | {t for ts in ARROWS.values() for t in ts} | FOUNDATION
    assert named <= units, named - units
    assert units <= named, f"modules with no place in the layering: {units - named}"


def module_graph() -> dict[str, set[str]]:
    known = {module_name(p) for p in files()}
    graph: dict[str, set[str]] = {}
    for p in files():
        targets = set()
        for name, _, _ in imports_of(p):
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module_name(p):
                targets.add(name)
        graph[module_name(p)] = targets
    return graph


def test_no_import_cycles():
    graph = module_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):       # a package importing its own submodules is not a cycle
                continue
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def import_blocks(body: list[ast.stmt]):
    """Runs of consecutive import statements in a statement list, recursively through nested blocks."""
    run: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            run.append(stmt)
            continue
        if run:
            yield run
            run = []
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt | ast.excepthandler):
                yield from import_blocks(inner)
    if run:
        yield run


def test_imports_inside_functions_say_why():
    """An import inside a function keeps start-up fast or a dependency optional; a comment says which."""
    missing = []
    for path in files():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for block in import_blocks(fn.body):
                span = lines[block[0].lineno - 2: block[-1].end_lineno]     # the line above, then the block
                if not any("#" in line for line in span):
                    missing.append(f"{path.relative_to(SRC.parent)}:{block[0].lineno}: {lines[block[0].lineno - 1].strip()}")
    assert not missing, "imports inside functions without a reason:\n" + "\n".join(missing)
