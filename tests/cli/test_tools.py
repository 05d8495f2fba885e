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
results = []
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # --help exits
            code = exc.code
    results.append({"argv": argv, "code": code, "out": out.getvalue()})
print(json.dumps({"results": results, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)
COMMANDS = [["--help"], *[["ls", kind] for kind in KINDS]]


def test_help_and_ls_import_neither_torch_nor_transformers():
    # every command in one fresh interpreter: if none of them imported torch, none of them did alone
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(COMMANDS)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["heavy"] == []
    for result in report["results"]:
        assert result["code"] == 0, result
        if result["argv"][0] == "ls":
            assert result["out"].split() == names_of(result["argv"][1])


@pytest.mark.parametrize("kind", KINDS)
def test_ls_names_are_the_registry_names(kind):
    # advantages and benchmarks are read from the source; the imported registries must agree
    assert names_of(kind) == registry(kind).names()
    assert names_of(kind)
