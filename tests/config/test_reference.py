"""The config reference: every key, its readable type, YAML default and one-line doc (from the source comments)."""

import re

import pytest

from longrl.config import load_config
from longrl.config.curriculum import RetrospectiveConfig
from longrl.config.reference import MISSING, config_keys, diff_trees, field_docs, normalize_key, sections
from longrl.config.rl import AlgoConfig

# Every optional section set and every list holding one element, so that a dump of it has every key.
FULL = [
    "model.tiny={}", "model.lora={}", "rollout.server={base_url: 'http://h:1/v1'}",
    "reward.judge={base_url: 'http://h:1/v1', model: m}", "eval.judge={base_url: 'http://h:1/v1', model: m}",
    "sft.teacher={base_url: 'http://h:1/v1', model: m}", "data.train=[{synth: {}}]", "data.eval=[{synth: {}}]",
    "reward.custom={path: my_reward.py}", "sft.data=[{synth: {}}]", "curriculum.phases=[{name: p, max_input_tokens: 64, max_response_tokens: 8, data: [{synth: {}}]}]",
]


def leaf_keys(tree, prefix=""):
    """Dotted keys of the values in a dumped config, list elements written [*] (free-form dicts are values)."""
    if isinstance(tree, dict) and not prefix.endswith(("overrides.", "rope_scaling.", "reward_kwargs.")):
        return {k for key, value in tree.items() for k in leaf_keys(value, f"{prefix}{key}.")}
    if isinstance(tree, list) and tree and all(isinstance(x, dict) for x in tree):
        return {prefix.rstrip(".")} | leaf_keys(tree[0], prefix.rstrip(".") + "[*].")
    return {prefix.rstrip(".")}


def test_every_key_of_a_full_config_is_in_the_reference_and_nothing_else():
    dumped = load_config(None, FULL).model_dump(mode="json")
    values = leaf_keys(dumped)
    listed = {k.name for k in config_keys() if not k.section}
    sub_sections = {k.name for k in config_keys() if k.section and "." in k.name}
    assert listed | sub_sections >= values
    assert listed <= values                   # no key the config does not have


def test_every_key_has_a_one_line_doc():
    undocumented = [k.name for k in config_keys() if not k.doc.strip()]
    assert undocumented == [], f"add a trailing `# comment` to these fields in src/longrl/config/*.py: {undocumented}"
    assert all("\n" not in k.doc for k in config_keys())


@pytest.mark.parametrize(("name", "type_", "default", "doc"), [
    ("rollout.group_size", "int (in [1, 1024])", "8", "G samples per prompt (paper: 8)"),
    ("rollout.top_p", "float (in (0, 1])", "0.95", "paper: 0.95"),
    ("algo.loss_agg", "token-mean | seq-mean-token-mean | seq-mean-token-sum-norm", "token-mean", "DAPO | GRPO"),
    ("algo.gen_prompts", "int | None (in [1, 65536])", "null", "prompts per generation round"),
    ("reward.judge", "JudgeConfig | None", "null", "None = rule only"),
    ("reward.judge_verifiers", "list[str]", "[qa, numeric]", "verifiers whose zeros"),
    ("optim.betas", "tuple[float, float]", "[0.9, 0.999]", "AdamW moment decay rates"),
    ("data.train", "list[DataSource]", "[{synth: {}}]", "RL training items"),   # one synth source, all defaults
    ("curriculum.phases[*].overrides", "dict[str, Any]", "{}", "dotted keys of any RL setting"),
    ("eval.max_input_tokens", "int | None (in [16, 4194304])", "120000", "middle truncation"),
    ("run.trackers", "list[tensorboard | wandb]", "[]", "experiment trackers"),
    ("algo.adv_eps", "float (> 0)", "1.0e-06", "(r - mean) / (std + eps)"),
])
def test_types_defaults_and_docs_read_as_written(name, type_, default, doc):
    (key,) = [k for k in config_keys() if k.name == name]
    assert (key.type, key.default) == (type_, default)
    assert key.doc.startswith(doc)


def test_required_keys_and_sections():
    keys = {k.name: k for k in config_keys()}
    assert keys["reward.judge.base_url"].required and keys["reward.judge.base_url"].default == ""
    assert keys["curriculum.phases[*].name"].required
    assert not keys["reward.judge"].required and keys["reward.judge"].section
    assert keys["rollout.validation"].section and keys["rollout.validation"].default == ""
    # a sub-section without its own comment takes its class docstring's first line
    assert keys["reward.overlong"].doc.startswith("DAPO overlong shaping")
    assert [s.name for s in sections()] == ["run", "model", "data", "reward", "rollout", "algo", "optim", "train", "sft",
                                            "curriculum", "eval", "pretrain"]
    assert sections()[0].doc == "seed, threads, device, logging and checkpoint cadence"


def test_comments_continued_below_a_field_belong_to_it_and_a_block_above_does_not():
    docs = field_docs(AlgoConfig)
    assert docs["gen_prompts"].endswith("each refill what is missing over the keep rate so far")
    assert re.search(r"data\.gen_batch_size; official script 384\); >= train", docs["gen_prompts"])
    retro = field_docs(RetrospectiveConfig)
    assert "What phase k trains on" not in retro["exclude_unsolved"]   # the block above `carry` is not a continuation
    assert retro["carry"].startswith("new_plus_carried = ")


def test_a_prefix_selects_a_section_or_a_key_and_depth_limits_it():
    assert {k.name for k in config_keys("rollout.server")} == {"rollout.server"} | {
        f"rollout.server.{n}" for n in ("base_url", "model_name", "reload_api", "weights_dir", "dtype", "shard_mb", "api_key_env",
                                        "concurrency", "timeout_s", "max_attempts", "backoff_s", "logprobs")}
    assert [k.name for k in config_keys("curriculum.phases.0.steps")] == ["curriculum.phases[*].steps"]  # override form
    assert [k.name for k in config_keys("algo", depth=0)] == ["algo"]
    assert "rollout.server.base_url" not in {k.name for k in config_keys("rollout", depth=1)}
    assert "curriculum.phases[*].name" in {k.name for k in config_keys("curriculum", depth=2)}
    with pytest.raises(KeyError):
        config_keys("rollout.sever")
    with pytest.raises(KeyError):
        config_keys("roll")                          # a prefix of a name is not a section


@pytest.mark.parametrize(("key", "expected"), [
    ("curriculum.phases.0.steps", "curriculum.phases[*].steps"),
    ("data.train.12.synth", "data.train[*].synth"),
    ("data.train[*].synth.n", "data.train[*].synth.n"),
    ("rollout", "rollout"),
])
def test_normalize_key(key, expected):
    assert normalize_key(key) == expected


def test_diff_trees_compares_key_by_key_and_lists_of_mappings_element_by_element():
    a = {"run": {"seed": 0, "name": "x"}, "phases": [{"steps": 1}, {"steps": 2}], "tasks": ["a", "b"], "j": None}
    b = {"run": {"seed": 1, "name": "x"}, "phases": [{"steps": 1}, {"steps": 3}, {"steps": 4}], "tasks": ["a", "c"],
         "j": {"k": 1}, "new": 5}
    assert diff_trees(a, b) == [
        ("run.seed", 0, 1),
        ("phases.1.steps", 2, 3),
        ("phases.2", MISSING, {"steps": 4}),
        ("tasks", ["a", "b"], ["a", "c"]),          # a list of values is one value
        ("j", None, {"k": 1}),
        ("new", MISSING, 5),
    ]
    assert diff_trees(a, a) == []
