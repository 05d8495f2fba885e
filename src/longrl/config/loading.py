"""Typed configuration: one YAML file plus dotted `key=value` overrides.

    cfg = load_config("configs/demo.yaml", ["algo.clip_eps_high=0.28", "run.seed=1"])

Every section is a pydantic model with `extra="forbid"`, one module per group in this
package (`config/rl.py`, `config/reward.py`, ...), composed here into `Config`, the whole
config of any command. The package imports no stage: a stage's loop takes the typed config
without importing the stages above it. Registry names inside a config (tasks, verifiers,
advantages, benchmarks) are checked by the command line (`longrl.cli.names.check_names`). Unknown keys and bad values fail before any work, with a message that
names the key, the file (or the override) and the accepted keys or values. The resolved config
is written as `config.yaml` into every run directory (`tracking.prepare_run_dir`).

Override values are parsed as YAML scalars or flow collections (`x=3`, `x=true`, `x=null`,
`x=[a, b]`, `x={k: 1}`); a list element is addressed by its index (`curriculum.phases.0.steps=5`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError, model_validator

from longrl.config.base import RunConfig, Section
from longrl.config.curriculum import CurriculumConfig
from longrl.config.data import DataConfig
from longrl.config.eval import EvalConfig
from longrl.config.model import ModelConfig, PretrainConfig
from longrl.config.reward import RewardConfig
from longrl.config.rl import AlgoConfig, OptimConfig, RolloutConfig, TrainConfig
from longrl.config.sft import SFTConfig
from longrl.errors import ConfigError
from longrl.limits import LimitError, load_yaml, read_small_file


class Config(Section):
    """The whole configuration of a longrl command; each command reads the sections it needs."""

    run: RunConfig = RunConfig()              # seed, threads, device, logging and checkpoint cadence
    model: ModelConfig = ModelConfig()        # policy / tokenizer to load (or the embedded tiny default)
    data: DataConfig = DataConfig()           # training and evaluation data sources
    reward: RewardConfig = RewardConfig()     # rule verifiers, LLM judge, overlong shaping
    rollout: RolloutConfig = RolloutConfig()  # group sampling: G, lengths, temperature
    algo: AlgoConfig = AlgoConfig()           # GRPO / DAPO objective
    optim: OptimConfig = OptimConfig()        # AdamW, schedule, clipping
    train: TrainConfig = TrainConfig()        # RL steps, batch shape, micro-batching
    sft: SFTConfig = SFTConfig()              # warm-up SFT
    curriculum: CurriculumConfig = CurriculumConfig()  # phases and retrospective sampling
    eval: EvalConfig = EvalConfig()           # benchmarks and protocol
    pretrain: PretrainConfig = PretrainConfig()  # making the tiny base model

    @model_validator(mode="after")
    def _check_generation_round(self) -> Config:
        gen, want = self.algo.gen_prompts, self.train.prompts_per_step
        if gen is not None and gen < want:
            raise ValueError(f"algo.gen_prompts ({gen}) is smaller than train.prompts_per_step ({want}): a generation "
                             f"round must draw at least the prompts a step trains on (the official script: 384 >= 128); "
                             f"raise algo.gen_prompts, or set it to null for refills sized by what is missing")
        return self


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read `path` (YAML; None = all defaults), apply `overrides`, validate. Raises ConfigError."""
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(path)
    override_keys: dict[str, str] = {}
    for item in overrides or []:
        key, value = parse_override(item)
        set_dotted(raw, key, value, source=f"override {item!r}")
        override_keys[key] = item
    return validate_config(raw, source, override_keys)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; ConfigError for anything unreadable, bounded (longrl.limits)."""
    try:
        raw = read_small_file(path)        # a regular file of at most 16 MB: not /dev/zero, not a FIFO
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except LimitError as exc:
        raise ConfigError(f"{path}: refused: the config file {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except LimitError as exc:
        raise ConfigError(f"{path}: refused: the YAML {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def validate_config(raw: dict[str, Any], source: str = "<config>", override_keys: dict[str, str] | None = None) -> Config:
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, override_keys or {})) from None
    check_phase_overrides(cfg, source)
    return cfg


def check_phase_overrides(cfg: Config, source: str) -> None:
    """Validate each curriculum phase's `overrides` now, as the phase will apply them (with its
    length limits), so a bad key in phase 3 fails before phases 1 and 2 have trained."""
    if not any(phase.overrides for phase in cfg.curriculum.phases):
        return
    base = cfg.model_dump(mode="python")
    base["curriculum"]["phases"] = []
    for i, phase in enumerate(cfg.curriculum.phases):
        raw = copy.deepcopy(base)
        where = f"{source}, curriculum.phases.{i}.overrides (phase {phase.name!r})"
        limits = {"rollout.max_input_tokens": phase.max_input_tokens, "rollout.max_new_tokens": phase.max_response_tokens}
        for key, value in {**limits, **phase.overrides}.items():
            set_dotted(raw, key, copy.deepcopy(value), source=where)
        try:
            Config.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, where, {k: f"{k}={v!r}" for k, v in phase.overrides.items()})) from None


def apply_overrides(cfg: Config, overrides: dict[str, Any], source: str = "<overrides>") -> Config:
    """A copy of `cfg` with dotted-key overrides (values already parsed) applied and re-validated."""
    raw = cfg.model_dump(mode="python")
    for key, value in overrides.items():
        set_dotted(raw, key, copy.deepcopy(value), source=source)
    return validate_config(raw, source, {k: f"{k}={v!r}" for k, v in overrides.items()})


def parse_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad override {item!r}: expected dotted.key=value, e.g. algo.clip_eps_high=0.28")
    try:
        value = load_yaml(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"bad override {item!r}: value is not valid YAML ({exc})") from None
    except LimitError as exc:
        raise ConfigError(f"bad override {key}=...: refused: the value {exc}") from None
    return key, value


def set_dotted(tree: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set `a.b.c` (list elements by index) in a nested dict/list, creating mappings on the way."""
    parts = key.split(".")
    node: Any = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{source}: {'.'.join(parts[:i])} has {len(node)} elements; no index {part!r}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: {'.'.join(parts[:i])} is a value, not a section; cannot set {key!r}")
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]


def format_validation_error(exc: ValidationError, source: str, override_keys: dict[str, str]) -> str:
    lines = [f"invalid config ({source}):"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        dotted = ".".join(loc)
        origin = override_keys.get(dotted)
        where = f" (from {origin})" if origin else ""
        if not loc:                                   # a check across sections names its own keys
            lines.append(f"  {err['msg'].removeprefix('Value error, ')}")
        elif err["type"] == "extra_forbidden":
            accepted = accepted_keys(loc[:-1])
            hint = f"; accepted keys here: {', '.join(accepted)}" if accepted else ""
            lines.append(f"  {dotted}{where}: unknown key{hint}")
        else:
            got = err.get("input")
            shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
            lines.append(f"  {dotted}{where}: {err['msg']} (got {shown})")
    return "\n".join(lines)


def accepted_keys(loc: list[str]) -> list[str]:
    """Field names of the model found at `loc` inside Config (list indices skipped)."""
    model: Any = Config
    for part in loc:
        if part.isdigit():
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _model_class(field.annotation)
        if model is None:
            return []
    return sorted(getattr(model, "model_fields", {}))


def _model_class(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_class(arg)
        if found is not None:
            return found
    return None


def data_sources(cfg: Config):
    """Every DataSource the config names (training, SFT, curriculum phases)."""
    yield from cfg.data.train
    yield from cfg.sft.data
    for phase in cfg.curriculum.phases:
        yield from phase.data
