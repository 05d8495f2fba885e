"""Config loading: YAML + dotted overrides, strict validation with located, actionable errors."""

from pathlib import Path

import pytest
import yaml

from longrl.cli.names import check_names
from longrl.config import (
    Config,
    apply_overrides,
    load_config,
    parse_override,
)
from longrl.errors import ConfigError
from longrl.tracking import to_yaml

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_validate():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.algo.clip_eps_low == 0.2 and cfg.rollout.group_size == 8


def test_yaml_and_overrides_compose(tmp_path):
    path = write(tmp_path, "algo: {clip_eps_high: 0.3}\nrun: {seed: 5}\n")
    cfg = load_config(path, ["run.seed=7", "rollout.temperature=0.5", "data.train=[{path: x.jsonl}]"])
    assert cfg.algo.clip_eps_high == 0.3  # from the file
    assert cfg.run.seed == 7  # the override wins over the file
    assert cfg.rollout.temperature == 0.5
    assert cfg.data.train[0].path == "x.jsonl"


def test_unknown_key_names_key_file_and_accepted_keys(tmp_path):
    path = write(tmp_path, "algo:\n  clip_eps_hgh: 0.3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "algo.clip_eps_hgh" in message and "unknown key" in message
    assert "clip_eps_high" in message and "clip_eps_low" in message  # the accepted keys


def test_bad_value_lists_accepted_values(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["algo.loss_agg=mean"])
    message = str(err.value)
    assert "algo.loss_agg" in message and "algo.loss_agg=mean" in message
    assert "token-mean" in message and "seq-mean-token-mean" in message


def test_bad_type_and_range(tmp_path):
    with pytest.raises(ConfigError, match=r"rollout.group_size"):
        load_config(None, ["rollout.group_size=0"])
    with pytest.raises(ConfigError, match=r"optim.lr"):
        load_config(None, ["optim.lr=fast"])


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer: unknown key; accepted keys here: .*algo"):
        load_config(write(tmp_path, "trainer: {steps: 3}\n"))


def test_list_index_override(tmp_path):
    path = write(tmp_path, "curriculum:\n  phases:\n    - {name: p1, max_input_tokens: 100, max_response_tokens: 10}\n")
    cfg = load_config(path, ["curriculum.phases.0.max_input_tokens=200"])
    assert cfg.curriculum.phases[0].max_input_tokens == 200
    with pytest.raises(ConfigError, match="no index '3'"):
        load_config(path, ["curriculum.phases.3.name=x"])


@pytest.mark.parametrize("item", ["noequals", "=3", "a..b=1", "a.b=[unclosed"])
def test_malformed_overrides(item):
    with pytest.raises(ConfigError, match="bad override"):
        parse_override(item)


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "algo: [unclosed\n"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_cross_field_check():
    with pytest.raises(ConfigError, match="exactly one of `path` or `synth`"):
        load_config(None, ["data.train=[{}]"])


def test_resolved_yaml_round_trips():
    cfg = load_config(None, ["run.seed=3"])
    again = Config.model_validate(yaml.safe_load(to_yaml(cfg)))
    assert again == cfg


def test_apply_overrides_revalidates():
    cfg = load_config()
    assert apply_overrides(cfg, {"algo.kl_coef": 0.01}).algo.kl_coef == 0.01
    with pytest.raises(ConfigError):
        apply_overrides(cfg, {"algo.kl_coef": -1})


def test_check_names_rejects_unknown_family():
    cfg = load_config(None, ["data.train=[{synth: {tasks: [docmath, sudoku]}}]"])
    with pytest.raises(ConfigError, match="sudoku.*known: choice, docmath, lookup, multihop"):
        check_names(cfg)


def test_check_names_rejects_synth_knobs_no_document_can_hold():
    cfg = load_config(None, ["data.train=[{synth: {tasks: [choice], hops: 2, distractors: 5000}}]"])
    with pytest.raises(ConfigError, match=r"synth: synthetic family 'choice' places at most \d+ distractors at 2 hops"):
        check_names(cfg)
    with pytest.raises(ConfigError, match="pretrain: synthetic family 'lookup' cannot chain 3000 hops"):
        check_names(load_config(None, ["pretrain.tasks=[lookup]", "pretrain.hops=3000"]))


def test_non_utf8_config_names_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"run:\n  seed: 1\n  name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"c.yaml, line 3: not UTF-8 text"):
        load_config(path)


def test_yaml_alias_bomb_is_refused_before_validation(tmp_path):
    rows = ["model:", "  rope_scaling:", "    a: &a [x, x, x, x, x, x, x, x, x]"]
    rows += [f"    {b}: &{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcdef", "bcdefg")]
    path = write(tmp_path, "\n".join(rows) + "\n")
    with pytest.raises(ConfigError, match=r"c.yaml: refused: the YAML expands to more than 100,000 values"):
        load_config(path)
    with pytest.raises(ConfigError, match="refused: the value a YAML alias refers to a block that contains it"):
        load_config(None, ["model.rope_scaling=&a {k: *a}"])


@pytest.mark.parametrize(("override", "message"), [
    ("rollout.temperature=.inf", r"rollout.temperature .*finite number \(got inf\)"),
    ("optim.lr=.nan", r"optim.lr .*finite number \(got nan\)"),
    ("eval.timeout_s=-.inf", r"eval.timeout_s .*finite number"),
    ("run.torch_threads=99999999999999999999", r"run.torch_threads .*less than or equal to 4096"),
    ("run.torch_threads=5000", r"run.torch_threads .*less than or equal to 4096"),
    ("run.seed=99999999999999999999", r"run.seed .*does not fit in 64 bits"),
    ("model.rope_scaling={rope_type: yarn, factor: .inf}", r"model.rope_scaling .*inf is not a finite number"),
    ("eval.pass_k=[1, 99999999999999999999]", r"eval.pass_k .*does not fit in 64 bits"),
    ("optim.betas=[0.9, 1.5]", r"optim.betas.1: Input should be less than 1"),
    ("data.train=[{synth: {length: 100000000}}]", r"data.train.0.synth.length: .*less than or equal to 1048576"),
    ("curriculum.phases=[{name: a, max_input_tokens: 64, max_response_tokens: 8, overrides: {x: .nan}}]",
     r"curriculum.phases.0.overrides: .*nan is not a finite number"),
])
def test_non_finite_and_absurd_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_phase_overrides_are_validated_with_the_config_not_when_the_phase_starts():
    phase = "curriculum.phases=[{name: p1, max_input_tokens: 64, max_response_tokens: 8, overrides: {%s}}]"
    with pytest.raises(ConfigError, match=r"curriculum.phases.0.overrides \(phase 'p1'\)\):\n  algo.clip_eps_hihg \(from algo.clip_eps_hihg=0.3\): unknown key"):
        load_config(None, [phase % "algo.clip_eps_hihg: 0.3"])
    with pytest.raises(ConfigError, match=r"reward.overlong.buffer .*greater than or equal to 1"):
        load_config(None, [phase % "reward.overlong.buffer: 0"])
    assert load_config(None, [phase % "algo.clip_eps_high: 0.3"]).curriculum.phases[0].overrides == {"algo.clip_eps_high": 0.3}


def test_a_generation_round_smaller_than_a_step_names_both_keys():
    with pytest.raises(ConfigError, match=r"algo.gen_prompts \(64\) is smaller than train.prompts_per_step \(128\)"):
        load_config(None, ["train.prompts_per_step=128", "algo.gen_prompts=64"])
    phase = "curriculum.phases=[{name: p1, max_input_tokens: 64, max_response_tokens: 8, overrides: {train.prompts_per_step: 8}}]"
    with pytest.raises(ConfigError, match=r"phase 'p1'.*\n  algo.gen_prompts \(4\) is smaller than train.prompts_per_step \(8\)"):
        load_config(None, ["algo.gen_prompts=4", phase])
    assert load_config(None, ["train.prompts_per_step=128", "algo.gen_prompts=128"]).algo.gen_prompts == 128


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_validates(path):
    check_names(load_config(path))


def test_resolved_config_shows_urls_without_credentials():
    from longrl.config import load_config
    from longrl.tracking import to_yaml

    cfg = load_config(None, ["eval.model=http://me:sk-in-url-123@host:8000/v1",
                             "reward.judge={base_url: 'https://sk-judge-token@judge.example/v1', model: j}"])
    text = to_yaml(cfg)
    assert "sk-in-url-123" not in text and "sk-judge-token" not in text
    assert "http://***@host:8000/v1" in text and "https://***@judge.example/v1" in text
    assert cfg.eval.model == "http://me:sk-in-url-123@host:8000/v1"   # the config itself keeps them for the requests
