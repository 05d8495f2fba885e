"""The command line as a user meets it: main(argv) -> exit status."""

import argparse

import pytest

from longrl.cli import build_parser, main
from longrl.config.reference import config_keys


def test_ls_lists_registry(capsys):
    assert main(["ls", "tasks"]) == 0
    assert capsys.readouterr().out.split() == ["choice", "docmath", "lookup", "multihop", "qa"]


def test_unknown_command_and_kind_fail():
    with pytest.raises(SystemExit) as err:
        main(["ls", "sudoku"])
    assert err.value.code != 0
    assert main([]) == 2


def test_validate(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("run: {seed: 1}\n")
    assert main(["validate", "--config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: {sede: 1}\n")
    assert main(["validate", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "run.sede: unknown key" in err and str(bad) in err and "seed" in err
    assert main(["validate", "--config", str(good), "algo.advantage=nope"]) in (0, 2)


def test_help_mentions_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("data", "validate", "ls", "demo", "bench"):
        assert command in out


def test_run_dir_refuses_a_different_config(tmp_path):
    from longrl.config import load_config
    from longrl.errors import ConfigError
    from longrl.tracking import prepare_run_dir

    prepare_run_dir(tmp_path, load_config(None, ["run.seed=1"]))
    prepare_run_dir(tmp_path, load_config(None, ["run.seed=1"]))  # same config: resume is fine
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')       # progress: a new config no longer replaces it
    with pytest.raises(ConfigError, match=r"different config \(changed: run.seed\)"):
        prepare_run_dir(tmp_path, load_config(None, ["run.seed=2"]))


# A module next to the data that records being imported: the file a data row, a flag or a config
# value would have to make longrl import. `yaml.py` shadows a library longrl imports lazily, which
# `python -m` would pick up from the working directory if longrl left it on the import path.
PROBE = "import pathlib\npathlib.Path(__file__).with_suffix('.imported').write_text('x')\nnothing = fly = 1\n"


def _plant_modules(folder):
    for name in ("auditpoc", "yaml"):
        (folder / f"{name}.py").write_text(PROBE)


def _imported(folder) -> list[str]:
    return sorted(p.name for p in folder.glob("*.imported"))


def _name_cases(folder):
    """(argv, what it names) pairs: every place a name from data, flags or config is resolved."""
    import json

    rows = folder / "rows.jsonl"
    rows.write_text(json.dumps({"id": 1, "task": "auditpoc:nothing", "question": "q",
                                "response": "<think>x</think>Therefore, the answer is 1", "answers": ["1"]}) + "\n")
    config = folder / "cfg.yaml"
    config.write_text("algo: {advantage: 'auditpoc:fly'}\neval: {benchmarks: ['auditpoc:fly']}\n"
                      "reward: {judge_verifiers: ['auditpoc:fly']}\n")
    return [
        (["score", "--input", str(rows), "--output", str(folder / "out.jsonl")], "task 'auditpoc:nothing'"),
        (["validate", "--config", str(config)], "advantage 'auditpoc:fly'"),
        (["data", "import", "--format", "auditpoc:fly", str(rows), "--out", str(folder / "x.jsonl")], "'auditpoc:fly'"),
        (["data", "synth", "--tasks", "auditpoc:fly", "--n", "1", "--length", "200", "--out", str(folder / "s.jsonl")], "'auditpoc:fly'"),
        (["eval", "--benchmarks", "auditpoc:fly", "--out", str(folder / "ev")], "'auditpoc:fly'"),
    ]


def test_names_from_data_flags_and_config_never_import_a_module(tmp_path, monkeypatch, capsys):
    """In-process, with the data folder as working directory and on sys.path (as `python -m` has it)."""
    import sys

    _plant_modules(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for argv, named in _name_cases(tmp_path):
        assert main(argv) == 2, argv
        assert named in capsys.readouterr().err, argv
    assert "auditpoc" not in sys.modules
    assert _imported(tmp_path) == []


def test_python_m_longrl_cli_never_imports_a_module_beside_the_data(tmp_path):
    """`python -m longrl.cli` (the torchrun form) run from the data folder: no planted module runs."""
    import subprocess
    import sys

    _plant_modules(tmp_path)
    for argv, named in _name_cases(tmp_path)[:3]:
        done = subprocess.run([sys.executable, "-m", "longrl.cli", *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, env={**__import__("os").environ, "PYTHONSAFEPATH": ""})
        assert done.returncode == 2, (argv, done.stderr[-2000:])
        assert named in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert _imported(tmp_path) == []


def every_action(parser: argparse.ArgumentParser, name: str = "longrl"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from every_action(sub, f"{name} {sub_name}")
        else:
            yield name, action


def test_every_argument_of_every_command_has_help():
    missing = [f"{cmd} {a.option_strings or a.dest}" for cmd, a in every_action(build_parser()) if not a.help]
    assert missing == []


# Commands whose override example may name an RL key; the others (score, eval, sft, ...) never read one.
RL_EXAMPLES_OK = {"longrl rl", "longrl pipeline", "longrl validate", "longrl plan", "longrl config show"}


def test_override_examples_name_keys_the_command_reads():
    for command, action in every_action(build_parser()):
        if action.dest != "overrides":
            continue
        example = action.help.split("e.g. ", 1)[1].split(" (", 1)[0].split()
        for item in example:
            key = item.split("=", 1)[0]
            config_keys(key)                                  # a real key (KeyError otherwise)
            if command not in RL_EXAMPLES_OK:
                assert not key.startswith(("algo.", "rollout.", "train.", "optim.")), f"{command} --help shows {key}"
