"""`longrl config keys|show|diff`, the config part of the training commands' --help, and docs/config.md."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from longrl.cli import main
from longrl.cli.config import markdown_page
from longrl.config import load_config
from longrl.config.reference import config_keys, sections
from longrl.tracking import to_yaml

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
DEMO = str(ROOT / "configs" / "demo.yaml")


def test_docs_page_is_in_sync_with_the_code():
    page = ROOT / "docs" / "config.md"
    assert page.is_file() and page.read_text(encoding="utf-8") == markdown_page(config_keys()), (
        "docs/config.md is out of date: run `longrl config keys --markdown > docs/config.md` (or `make docs`)")


def test_keys_of_a_section_one_line_each(capsys):
    assert main(["config", "keys", "rollout"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "rollout: RolloutConfig  # group sampling: G, lengths, temperature"
    assert "rollout.group_size: int (in [1, 1024]) = 8  # G samples per prompt (paper: 8)" in lines
    assert "rollout.server.base_url: str (required)  # its OpenAI API root, e.g. http://127.0.0.1:30000/v1" in lines
    assert all(line.startswith("rollout") for line in lines)


def test_keys_lists_every_key_and_takes_an_override_key(capsys):
    assert main(["config", "keys"]) == 0
    out = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(out) == len(config_keys())
    assert main(["config", "keys", "curriculum.phases.0.steps"]) == 0
    assert capsys.readouterr().out.startswith("curriculum.phases[*].steps: int | None (>= 1) = null  # RL steps")


def test_unknown_section_exits_2_listing_the_sections(capsys):
    assert main(["config", "keys", "rollout.sever"]) == 2
    err = capsys.readouterr().err
    assert "no config section or key 'rollout.sever' (did you mean rollout.server" in err
    assert "sections: " + ", ".join(s.name for s in sections()) in err


def test_show_prints_the_resolved_config_as_a_run_records_it(tmp_path, capsys):
    assert main(["config", "show", "--config", SMOKE, "algo.clip_eps_high=0.3", "run.seed=5"]) == 0
    out = capsys.readouterr().out
    cfg = load_config(SMOKE, ["algo.clip_eps_high=0.3", "run.seed=5"])
    assert out == to_yaml(cfg)                               # what DIR/config.yaml of this run holds
    shown = yaml.safe_load(out)
    assert shown["algo"]["clip_eps_high"] == 0.3 and shown["run"]["seed"] == 5
    assert shown["eval"]["top_p"] == 0.95                    # defaults filled in, every section present
    assert list(shown) == [s.name for s in sections()]
    run = tmp_path / "run"                                   # a run directory stands for its config.yaml
    run.mkdir()
    (run / "config.yaml").write_text(out)
    assert main(["config", "show", "--config", str(run)]) == 0
    assert capsys.readouterr().out == out


def test_show_hides_url_credentials(capsys):
    assert main(["config", "show", "reward.judge={base_url: 'http://u:secret@h:1/v1', model: m}"]) == 0
    out = capsys.readouterr().out
    assert "secret" not in out and "http://***@h:1/v1" in out


def test_diff_resolves_both_sides_and_prints_the_keys_that_differ(tmp_path, capsys):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("run: {seed: 0}\nalgo: {clip_eps_high: 0.28}\n")      # both are the defaults
    b.write_text("run: {seed: 1}\ncurriculum:\n  phases:\n    - {name: p1, max_input_tokens: 512, max_response_tokens: 8}\n")
    assert main(["config", "diff", str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["key", str(a), str(b)]
    assert [line.split()[:3] for line in lines[1:2]] == [["run.seed", "0", "1"]]
    assert lines[2].startswith("curriculum.phases.0") and "(absent)" in lines[2] and "name: p1" in lines[2]
    assert len(lines) == 3
    assert main(["config", "diff", str(a), str(b), "--exit-code"]) == 1
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    capsys.readouterr()
    assert main(["config", "diff", str(a), str(empty), "--exit-code"]) == 0   # defaults written out == defaults
    captured = capsys.readouterr()
    assert captured.out == "" and "no difference" in captured.err


def test_diff_a_run_directory_against_a_config(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(to_yaml(load_config(SMOKE, ["train.steps=7"])))
    assert main(["config", "diff", str(run), SMOKE]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[1:]] == [["train.steps", "7", str(load_config(SMOKE).train.steps)]]


# command -> (sections named in its --help, keys whose docs its --help shows)
HELP = {
    "rl": (["run", "model", "data", "reward", "rollout", "algo", "optim", "train"],
           ["rollout.group_size", "algo.clip_eps_high", "algo.loss_agg", "train.prompts_per_step"]),
    "sft": (["run", "model", "data", "sft"], ["sft.lr", "sft.batch_tokens", "sft.teacher"]),
    "eval": (["run", "model", "reward", "eval"], ["eval.benchmarks", "eval.protocol", "eval.judge"]),
    "pipeline": (["sft", "curriculum", "eval"], ["curriculum.phases[*].steps", "curriculum.retrospective.mode"]),
}


@pytest.mark.parametrize("command", sorted(HELP))
def test_training_commands_help_shows_their_sections_and_keys_with_the_same_docs(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())            # wrapping undone
    names, keys = HELP[command]
    docs = {k.name: k for k in config_keys()}
    for name in names:
        assert f"{name} {docs[name].doc}" in out
    for name in keys:
        assert name in out and docs[name].doc in out
    assert "longrl config keys SECTION" in out


def test_help_of_longrl_imports_no_config_models():
    probe = ("import sys, contextlib, io\nfrom longrl.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
             "print(__import__('json').dumps([m for m in ('pydantic', 'longrl.config') if m in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
