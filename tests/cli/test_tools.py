"""`longrl ls` and `longrl --help` start without torch or transformers; `ls` lists what the registries hold."""

import json
import subprocess
import sys

import pytest

from longrl.cli.tools import KINDS, names_of, registry

HEAVY = ("torch", "transformers")

PROBE = """
import contextlib, io, json, sys
from longrl.cli import main
argv = json.loads(sys.argv[1])
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(argv)
    except SystemExit as exc:  # --help exits
        code = exc.code
print(json.dumps({"code": code, "out": out.getvalue(), "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def run_fresh(argv: list[str]) -> dict:
    """main(argv) in a fresh interpreter; which heavy modules it imported."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("argv", [["--help"], *[["ls", kind] for kind in KINDS]])
def test_help_and_ls_import_neither_torch_nor_transformers(argv):
    result = run_fresh(argv)
    assert result["code"] == 0 and result["heavy"] == [], result
    if argv[0] == "ls":
        assert result["out"].split() == names_of(argv[1])


@pytest.mark.parametrize("kind", KINDS)
def test_ls_names_are_the_registry_names(kind):
    # advantages and benchmarks are read from the source; the imported registries must agree
    assert names_of(kind) == registry(kind).names()
    assert names_of(kind)
