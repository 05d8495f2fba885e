"""Resolve every registry name a config holds, once, before any work (`check_names`).

The config package imports no stage, so the names it holds (synthetic families, verifiers,
advantages, benchmarks) are checked here, at the command line, against the stages' registries.
"""

from __future__ import annotations

from longrl.config import Config, data_sources
from longrl.data.synthetic import FAMILIES, plan_knobs
from longrl.errors import ConfigError, UserError
from longrl.eval.benchmarks import BENCHMARKS
from longrl.models.lora import check_available as check_lora_available
from longrl.models.packaged import PACKAGED
from longrl.models.packaged import check_available as check_packaged_available
from longrl.rewards.custom import load_custom
from longrl.rewards.verifiers import VERIFIERS
from longrl.rl.algos import ADVANTAGES
from longrl.trackers import check_available

# (config key, the names it holds, the registry that must know them)
NAME_CHECKS = [
    ("synth.tasks", lambda cfg: [t for s in data_sources(cfg) if s.synth for t in s.synth.tasks], FAMILIES),
    ("reward.judge_verifiers", lambda cfg: cfg.reward.judge_verifiers, VERIFIERS),
    ("algo.advantage", lambda cfg: [cfg.algo.advantage], ADVANTAGES),
    ("eval.benchmarks", lambda cfg: cfg.eval.benchmarks, BENCHMARKS),
    ("pretrain.tasks", lambda cfg: cfg.pretrain.tasks, FAMILIES),
]


def check_names(cfg: Config) -> None:
    """ConfigError listing every unknown name with the known ones; returns None when all resolve."""
    problems = []
    for key, names_of, registry in NAME_CHECKS:
        for name in names_of(cfg):
            if name not in registry:
                problems.append(f"  {key}: unknown {registry.kind} {name!r}; known: {', '.join(registry.names())}")
    problems += synth_problems(cfg) if not problems else []
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(problems))
    check_available(cfg.run.trackers)            # an optional package missing: said before any work
    check_lora_available(cfg.model.lora)
    for name in (cfg.model.path, cfg.model.tokenizer, cfg.eval.model, cfg.eval.tokenizer):
        if name and name.startswith("builtin:") and name[len("builtin:"):] in PACKAGED:
            check_packaged_available(name[len("builtin:"):])   # the `real` extra missing: said before any work
    if cfg.reward.custom is not None:            # the user's reward file: loaded (once) before any work
        load_custom(cfg.reward.custom)


def synth_problems(cfg: Config) -> list[str]:
    """Synthetic specs (data sources, pretrain) asking for more hops or decoys than a family can place."""
    specs = [("synth", s.synth.tasks, s.synth.length, s.synth.hops, s.synth.distractors) for s in data_sources(cfg) if s.synth]
    p = cfg.pretrain
    specs.append(("pretrain", p.tasks, p.max_length, p.hops, p.distractors))
    problems = []
    for key, tasks, length, hops, distractors in specs:
        for task in tasks:
            try:
                plan_knobs(task, length, hops, distractors)
            except UserError as exc:
                problems.append(f"  {key}: {exc}")
    return sorted(set(problems))
