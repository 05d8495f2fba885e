"""The command line as a user meets it: main(argv) -> exit status."""

import pytest

from longrl.cli import main


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
    with pytest.raises(ConfigError, match=r"different config \(changed: run.seed\)"):
        prepare_run_dir(tmp_path, load_config(None, ["run.seed=2"]))
