"""`longrl config keys|show|diff`: every config key with its type, default and doc; a resolved config; two compared.

    longrl config keys                          # every key: `key: type = default  # doc`
    longrl config keys rollout                  # one section, or a part of one (rollout.server, curriculum.phases)
    longrl config keys --markdown > docs/config.md               # the reference page (`make docs`)
    longrl config show --config configs/demo.yaml algo.clip_eps_high=0.3   # the resolved config as YAML
    longrl config diff runs/demo configs/demo.yaml              # the keys whose values differ
    longrl config diff a.yaml b.yaml --exit-code                # exit 1 when they differ, as `git diff --exit-code`

`show` prints every key, defaults filled in, as the YAML a run writes to DIR/config.yaml (verl's
`--cfg job`); it checks keys and values, `longrl validate` also the registry names. `diff` resolves
both sides the same way before comparing, so a key left at its default equals the default written
out; a run directory stands for its config.yaml. The docs are the config source's own comments
(`longrl.config.reference`); `rl`, `sft`, `eval` and `pipeline` show those of their sections in `--help`.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
import textwrap
from pathlib import Path

from longrl.cli.args import add_config_arguments
from longrl.errors import ConfigError

MARKDOWN_HEADER = """\
# Config reference

Generated from the config source (`src/longrl/config/*.py`, each key's trailing comment) by
`longrl config keys --markdown > docs/config.md` (`make docs`); `tests/cli/test_config.py` fails
when this page and the code disagree. `longrl config keys SECTION` prints the same in a terminal.

One YAML file holds a whole config; any key can be overridden on the command line with its dotted
name (`algo.clip_eps_high=0.28`). `[*]` stands for any element of a list: override one by its index
(`curriculum.phases.0.steps=5`). A *required* key has no default: it must be given when its section
(an optional one such as `reward.judge`, or a list element) is present. Bounds in the type column
are checked when the config loads. `longrl config show --config FILE` prints a config with every
default filled in; `longrl config diff A B` compares two configs or run directories.
"""


def register(sub) -> None:
    p = sub.add_parser("config", help="list every config key with its doc; show a resolved config; diff two",
                       description="The config reference (every key with its type, default and doc), a config "
                                   "resolved with its defaults as YAML, and the keys where two configs differ.")
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    keys = actions.add_parser("keys", help="every key (or a section's) with its type, default and one-line doc",
                              description="List config keys as `key: type = default  # doc`. `[*]` is any list "
                                          "element (override it by index: curriculum.phases.0.steps=5).")
    keys.add_argument("section", nargs="?", metavar="SECTION",
                      help="a section (rollout), part of one (rollout.server, curriculum.phases) or a key; default: all")
    keys.add_argument("--markdown", action="store_true", help="a Markdown reference page instead (docs/config.md)")
    keys.set_defaults(handler=run_keys)

    show = actions.add_parser("show", help="print a config resolved (file + overrides + defaults) as YAML",
                              description="Print the config that --config and the overrides resolve to, every key "
                                          "with its default filled in, as the YAML a run writes to DIR/config.yaml. "
                                          "--config may name a run directory (its config.yaml).")
    add_config_arguments(show, out=False, example="rollout.group_size=16 run.seed=1")
    show.set_defaults(handler=run_show)

    diff = actions.add_parser("diff", help="the keys whose values differ between two configs or run directories",
                              description="Resolve A and B (config files, or run directories: their config.yaml) "
                                          "with their defaults and print each key whose values differ.")
    diff.add_argument("a", metavar="A", help="config file or run directory")
    diff.add_argument("b", metavar="B", help="config file or run directory")
    diff.add_argument("--exit-code", action="store_true", help="exit 1 when they differ, 0 when not (as git diff)")
    diff.set_defaults(handler=run_diff)


def run_keys(args: argparse.Namespace) -> int:
    from longrl.config.reference import config_keys  # lazy: config loads only when a command runs

    keys = config_keys() if args.section is None else section_keys(args.section)
    if args.markdown:
        sys.stdout.write(markdown_page(keys))
        return 0
    lines = [("\n" if i and "." not in key.name else "") + key_line(key)  # a blank line between top-level sections
             for i, key in enumerate(keys)]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def section_keys(name: str):
    """The keys of section (or key) `name`; ConfigError listing the sections when there is none."""
    from longrl.config.reference import config_keys, sections  # lazy: config loads only when a command runs

    try:
        return config_keys(name)
    except KeyError:
        names = [k.name for k in config_keys()]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"no config section or key {name!r}{hint}; sections: "
                          f"{', '.join(s.name for s in sections())}") from None


def key_line(key) -> str:
    """`rollout.group_size: int (in [1, 1024]) = 8  # G samples per prompt (paper: 8)`: one key, one line."""
    return f"{key_signature(key)}  # {key.doc}"


def key_signature(key) -> str:
    """`name: type = default`; `(required)` for a key without a default; a section shows no default."""
    if key.required:
        return f"{key.name}: {key.type} (required)"
    return f"{key.name}: {key.type}" + (f" = {key.default}" if key.default else "")


def add_config_help(parser: argparse.ArgumentParser, reads: list[str], detail: list[tuple[str, int]]) -> None:
    """`-h/--help` whose text ends with the config sections the command `reads` (each with its doc) and
    the keys of its main sections (`detail`: (section, levels below it)) with theirs.

    The parser must be made with `add_help=False`. The text is built only when help is asked for:
    it loads the config models, which `longrl --help` and every other command's start never do.
    """
    parser.formatter_class = KeepLinesFormatter
    parser.add_argument("-h", "--help", action=ConfigHelp, reads=reads, detail=detail,
                        help="show this help message (and the config keys the command reads) and exit")


class ConfigHelp(argparse.Action):
    """The `-h` of `add_config_help`: sets the epilog from the config reference, prints the help, exits 0."""

    def __init__(self, option_strings, dest, reads, detail, help=None):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)
        self.reads, self.detail = reads, detail

    def __call__(self, parser, namespace, values, option_string=None):
        parser.epilog = help_epilog(self.reads, self.detail)
        parser.print_help()
        parser.exit()


class KeepLinesFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph text (a description) to the terminal; text already laid out in lines (the
    config epilog) is kept as it is."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" not in text:
            return super()._fill_text(text, width, indent)
        return "".join(indent + line for line in text.splitlines(keepends=True))


def help_epilog(reads: list[str], detail: list[tuple[str, int]]) -> str:
    """The config part of a command's --help: the sections it reads with their docs, then the keys
    of its main sections (`detail`: (section, levels below it)) with theirs, wrapped to the terminal."""
    from longrl.config.reference import config_keys, sections  # lazy: config loads only when help is asked for

    width = max(60, min(shutil.get_terminal_size().columns, 120) - 2)
    docs = {s.name: s.doc for s in sections()}
    lines = ["config sections it reads (override any key as KEY=VALUE):"]
    lines += [f"  {name:<11} {docs[name]}" for name in reads]
    for section, depth in detail:
        lines += ["", f"{section} keys:"]
        keys = config_keys(section, depth)[1:]
        for key in keys:
            hidden = key.section and not any(k.name.startswith(key.name) and k is not key for k in keys)
            doc = key.doc + (f" (its keys: `longrl config keys {key.name}`)" if hidden else "")
            lines.append(f"  {key_signature(key)}")
            lines += textwrap.wrap(doc, width, initial_indent="      ", subsequent_indent="      ",
                                   break_on_hyphens=False, break_long_words=False)
    lines += ["", "every key of a section with its type, default and doc: `longrl config keys SECTION`;",
              "a config with its defaults filled in: `longrl config show --config FILE [KEY=VALUE ...]`"]
    return "\n".join(lines) + "\n"


def markdown_page(keys) -> str:
    """docs/config.md: a table of sections, then per section its keys (key, type, default, doc)."""
    tops = [k for k in keys if "." not in k.name]
    out = [MARKDOWN_HEADER]
    if len(tops) > 1:
        out += ["| section | what it holds |", "|---|---|"]
        out += [f"| [`{k.name}`](#{k.name}) | {_cell(k.doc)} |" for k in tops]
    for key in keys:
        if "." not in key.name:
            out += ["", f"## `{key.name}`", "", _cell(key.doc), "", "| key | type | default | description |", "|---|---|---|---|"]
            continue
        default = "*required*" if key.required else f"`{key.default}`" if key.default else ""
        out.append(f"| `{key.name}` | {_cell(key.type)} | {default} | {_cell(key.doc)} |")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell: `|` escaped; outside code spans `<` and `*` too (no HTML, no emphasis)."""
    parts = text.replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace("*", "\\*")
    return "`".join(parts)


def run_show(args: argparse.Namespace) -> int:
    from longrl.config import load_config  # lazy: config loads only when a command runs
    from longrl.tracking import to_yaml

    cfg = load_config(config_file(args.config) if args.config else None, args.overrides)
    sys.stdout.write(to_yaml(cfg))
    return 0


def run_diff(args: argparse.Namespace) -> int:
    # lazy: config loads only when a command runs
    from longrl.config import load_config
    from longrl.config.reference import diff_trees
    from longrl.secrets import scrub_urls

    a, b = (scrub_urls(load_config(config_file(p)).model_dump(mode="json")) for p in (args.a, args.b))
    rows = [(key, shown(x), shown(y)) for key, x, y in diff_trees(a, b)]
    if not rows:
        print(f"{args.a} and {args.b}: no difference (defaults filled in)", file=sys.stderr)
        return 0
    rows.insert(0, ("key", args.a, args.b))
    for key, x, y in aligned(rows):
        print(f"{key}  {x}  {y}".rstrip())
    return 1 if args.exit_code else 0


def aligned(rows: list[tuple[str, str, str]], cap: int = 40) -> list[tuple[str, str, str]]:
    """Columns padded to their widest cell; a cell wider than `cap` is left unpadded (its row alone
    goes out of line) so one long list does not push every other row to the right."""
    wide = [max((len(row[i]) for row in rows if len(row[i]) <= cap), default=0) for i in (0, 1)]
    return [(key.ljust(wide[0]), x.ljust(wide[1]), y) for key, x, y in rows]


def shown(value) -> str:
    from longrl.config.reference import MISSING, yaml_value  # lazy: config loads only when a command runs

    return "(absent)" if value is MISSING else yaml_value(value)


def config_file(path: str) -> Path:
    """A config file, or a run directory's config.yaml; ConfigError for a directory without one."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"{path}: a directory without config.yaml; name a config file or a run directory")
        return path / "config.yaml"
    return path
