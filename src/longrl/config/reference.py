"""The config reference: every key of `Config` with its type, default and one-line doc.

    for key in config_keys("rollout"):
        print(key.name, key.type, key.default, key.doc)   # rollout.group_size int (>= 1) 8 G samples per prompt (paper: 8)

The docs are the trailing `# comments` of the field lines in `config/*.py` (read with `tokenize`, so
the source stays the one place a setting is explained); a comment continued on the lines below a
field, indented past it, belongs to it. A sub-section without a comment takes the first line of its
class docstring. Keys inside lists are written with `[*]` (`curriculum.phases[*].steps`); an override
names the element by its index (`curriculum.phases.0.steps=5`). `longrl config keys` prints this,
`docs/config.md` is generated from it, and `diff_trees` compares two resolved configs key by key.
"""

from __future__ import annotations

import ast
import inspect
import io
import textwrap
import tokenize
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from longrl.config.loading import Config


@dataclass(frozen=True)
class ConfigKey:
    name: str         # dotted key; [*] stands for any index of a list
    type: str         # readable type with its bounds: "int (>= 1)", "strict | published", "JudgeConfig | None"
    default: str      # the default as YAML ("8", "null", "[qa, numeric]"); "" when required or a section
    doc: str          # the one-line doc
    required: bool    # no default: the key must be given (inside an optional section or a list item)
    section: bool     # a group of keys (its own keys follow it), not a value


def config_keys(prefix: str | None = None, depth: int | None = None) -> list[ConfigKey]:
    """Every key of Config in source order, the sub-section rows before their keys.

    Args:
        prefix: a section or key (`rollout`, `curriculum.phases`, `curriculum.phases.0.steps`); only it
            and the keys below it. None = all. An unknown one raises KeyError.
        depth: keep keys at most this many levels below `prefix` (below the top when None: 0 = the
            sections); an element of a list is on its list's level (`curriculum.phases[*].steps`: 2).
    """
    keys = list(_walk(Config, ""))
    top = 0
    if prefix is not None:
        prefix, top = normalize_key(prefix), _level(normalize_key(prefix))
        keys = [k for k in keys if k.name == prefix or k.name.startswith((prefix + ".", prefix + "[*]"))]
        if not keys:
            raise KeyError(prefix)
    return [k for k in keys if depth is None or _level(k.name) - top <= depth]


def sections() -> list[ConfigKey]:
    """The top-level sections (run, model, data, ...) with their one-line docs."""
    return config_keys(depth=0)


def normalize_key(key: str) -> str:
    """An override's key as a reference key: list indices become [*] (`phases.0.steps` -> `phases[*].steps`)."""
    out = ""
    for part in key.strip(".").split("."):
        if part.isdigit() or part in ("*", "[*]"):
            out += "[*]"
        else:
            out += ("." if out else "") + part.removesuffix("[*]") + ("[*]" if part.endswith("[*]") else "")
    return out


def _level(name: str) -> int:
    return name.replace("[*]", "").count(".")


def _walk(model: type[BaseModel], prefix: str) -> Iterator[ConfigKey]:
    docs = field_docs(model)
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        inner = _section_class(field.annotation)
        doc = docs.get(name) or (_first_line(inner.__doc__) if inner is not None else "")
        yield ConfigKey(name=key, type=type_name(field.annotation) + _bounds(field), default=_default(field),
                        doc=doc, required=field.is_required(), section=inner is not None)
        if inner is not None:
            many = typing.get_origin(field.annotation) is list
            yield from _walk(inner, f"{key}[*]." if many else f"{key}.")


@cache
def field_docs(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> its one-line doc: the comment(s) on its line(s), continued on following comment
    lines indented past the field. Fields inherited from a base class are read from that class."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if cls is not BaseModel and issubclass(cls, BaseModel) and "__annotations__" in vars(cls):
            docs.update(_class_comments(cls))
    return docs


def _class_comments(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent("".join(inspect.getsourcelines(cls)[0]))
    except (OSError, TypeError):   # no source shipped (a frozen or zipped install): no docs, nothing breaks
        return {}
    comments: dict[int, tuple[int, str, bool]] = {}   # line -> (column, text, alone on its line)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            alone = not tok.line[: tok.start[1]].strip()
            comments[tok.start[0]] = (tok.start[1], tok.string.lstrip("#").strip(), alone)
    body = ast.parse(source).body[0].body
    out = {}
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        parts = [comments[n][1] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        if parts:
            following = body[i + 1].lineno if i + 1 < len(body) else source.count("\n") + 1
            for n in range(node.end_lineno + 1, following):
                column, text, alone = comments.get(n, (0, "", False))
                if not (alone and column > node.col_offset):
                    break
                parts.append(text)
        out[node.target.id] = " ".join(parts)
    return out


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0].strip().removesuffix(".")


def _section_class(annotation: Any) -> type[BaseModel] | None:
    """The model class of a sub-section field (`X`, `X | None`, `list[X]`); None for a value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _section_class(arg)
    return None


def type_name(annotation: Any) -> str:
    """A readable type: int, float, `a | b` for Literal choices, list[DataSource], `str | None`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_name(a) for a in args if a is not type(None)]
        return " | ".join(parts + ["None"] * (type(None) in args))
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if annotation is Any:
        return "Any"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: FieldInfo) -> str:
    """` (>= 1)`, ` (in (0, 1])`: the numeric bounds pydantic checks; "" when there are none."""
    low = high = None
    for item in field.metadata:                    # annotated_types' Ge, Gt, Le, Lt
        if getattr(item, "ge", None) is not None or getattr(item, "gt", None) is not None:
            low = ("[", item.ge) if getattr(item, "ge", None) is not None else ("(", item.gt)
        if getattr(item, "le", None) is not None or getattr(item, "lt", None) is not None:
            high = ("]", item.le) if getattr(item, "le", None) is not None else (")", item.lt)
    if low and high:
        return f" (in {low[0]}{str(low[1])}, {str(high[1])}{high[0]})"
    if low:
        return f" ({'>=' if low[0] == '[' else '>'} {str(low[1])})"
    if high:
        return f" ({'<=' if high[0] == ']' else '<'} {str(high[1])})"
    return ""


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return ""
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""                                  # a section: its keys below carry the defaults
    return yaml_value(_plain(value))


def _plain(value: Any) -> Any:
    """A default as plain data; sections inside (e.g. a default list of sources) keep their non-default keys."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def yaml_value(value: Any) -> str:
    """One value as YAML on one line: 8, 0.0015, null, true, strict, [qa, numeric], {synth: {}}."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16, allow_unicode=True, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def diff_trees(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) for every key whose values differ, in a's key order.

    Mappings are compared key by key and lists of mappings element by element
    (`curriculum.phases.0.steps`); a key or element on one side only has the value MISSING on the
    other. Any other list is one value.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in [*a, *(k for k in b if k not in a)]:
            out += diff_trees(a.get(key, MISSING), b.get(key, MISSING), f"{prefix}{key}.")
        return out
    if isinstance(a, list) and isinstance(b, list) and all(isinstance(x, dict) for x in a + b):
        out = []
        for i in range(max(len(a), len(b))):
            out += diff_trees(a[i] if i < len(a) else MISSING, b[i] if i < len(b) else MISSING, f"{prefix}{i}.")
        return out
    return [(prefix.rstrip("."), a, b)] if a != b else []


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


MISSING: Any = _Missing()   # the value of a key on one side of a diff only
