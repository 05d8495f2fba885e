"""The QwenLong-L1 recipe as one resumable command: SFT -> phase 1 -> retrospective -> phase 2 ... -> eval.

    longrl pipeline --config configs/demo.yaml --out runs/demo
    longrl pipeline --config configs/qwenlong_l1_32b.yaml --out runs/32b curriculum.phases.1.steps=200

Each stage runs in its own subdirectory of --out:

    sft/        warm-up SFT on `sft.data` (skipped when empty: RL starts from `model.path`)
    phase1/     RL on phase 1's items that fit its `max_input_tokens` (`rl/trainer.py`)
    retro1/     retrospective sampling: the hardest items of the earlier phases, carried into phase 2
    phase2/     RL from phase 1's final weights on phase 2's items + the carried ones
    ...
    eval/sft/   the SFT checkpoint (the RL starting point) on `eval.benchmarks`
    eval/rl/    the final policy on the same items
    report.md   training dynamics and accuracy against document length (`longrl report`)

A stage that finished writes `stage.json`; rerunning the same command after a crash or Ctrl-C
skips finished stages and resumes the one in progress from its newest checkpoint, so nothing
finished is redone. Each phase's item list is frozen in `phaseK/items.jsonl` on first entry.

Under torchrun (`torchrun --nproc_per_node N -m longrl.cli pipeline ...`) SFT and the RL phases
run sharded on every rank, offline retrospective scoring splits its items across ranks by whole
groups, and rank 0 alone writes run files. Evaluation and the report run on rank 0 alone once
the training stages are done (the other ranks end there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from longrl.config import Config
from longrl.config.model import ModelConfig
from longrl.console import info
from longrl.curriculum.phases import filter_by_length, phase_config, phase_steps, prompts_per_round
from longrl.curriculum.retrospective import (
    DifficultyStore,
    save_selection,
    score_offline,
    select_hard,
)
from longrl.data.io import read_samples, write_samples
from longrl.data.schema import Sample
from longrl.data.sources import load_items
from longrl.engine.distributed import SINGLE, Dist, setup
from longrl.eval.backends import LocalBackend
from longrl.eval.benchmarks import load_suites
from longrl.eval.harness import build_reward, evaluate
from longrl.files import atomic_write_json
from longrl.models.loading import load_policy, load_tokenizer
from longrl.report import write_report
from longrl.rl.trainer import train
from longrl.sft.trainer import train_sft
from longrl.tracking import check_run_dir, prepare_run_dir


def stage_done(path: Path) -> dict[str, Any] | None:
    marker = path / "stage.json"
    return json.loads(marker.read_text()) if marker.exists() else None


def mark_done(path: Path, dist: Dist = SINGLE, **record: Any) -> dict[str, Any]:
    record = {"status": "done", **record}
    if dist.is_main:
        atomic_write_json(path / "stage.json", record)
    return record


def run_sft(cfg: Config, out: Path, dist: Dist = SINGLE) -> str:
    """Warm-up SFT; returns the weights RL starts from."""
    stage = out / "sft"
    if not cfg.sft.data:
        return cfg.model.path
    if (done := stage_done(stage)) is not None:
        return done["final"]

    info(f"[pipeline] stage sft -> {stage}")
    final = train_sft(cfg, stage)
    return mark_done(stage, dist, final=str(final))["final"]


def phase_items(cfg: Config, k: int, tokenizer, carried: list[Sample], stage: Path, dist: Dist = SINGLE) -> list[Sample]:
    """Phase k's new items plus the carried ones, filtered to its input limit; frozen on first entry."""
    frozen = stage / "items.jsonl"
    if frozen.exists():
        return read_samples(frozen).samples

    phase = cfg.curriculum.phases[k - 1]
    new = load_items(phase.data, tokenizer, cfg.data.skip_bad) if phase.data else []
    new_ids = {s.id for s in new}
    pool = new + [s for s in carried if s.id not in new_ids]
    kept = filter_by_length(pool, tokenizer, phase.max_input_tokens)
    counts = {"phase": phase.name, "new": len(new), "carried": len(pool) - len(new), **kept.counts(),
              "max_input_tokens": phase.max_input_tokens, "max_response_tokens": phase.max_response_tokens}
    info(f"[pipeline] {phase.name}: {counts['kept']} items fit {phase.max_input_tokens} tokens "
         f"({counts['dropped']} dropped; {counts['carried']} carried from earlier phases)")
    stage.mkdir(parents=True, exist_ok=True)
    if dist.is_main:                    # every rank made the same list; one writes it
        atomic_write_json(stage / "items.json", counts)
        write_samples(frozen, kept.kept)
    return kept.kept


def run_retrospective(cfg: Config, out: Path, k: int, policy_path: str, earlier: list[Sample], tokenizer,
                      device: torch.device, dist: Dist = SINGLE) -> list[Sample]:
    """Between phase k and k+1: the hardest earlier items (under phase k+1's limits), saved in retroK/."""

    stage = out / f"retro{k}"
    retro = cfg.curriculum.retrospective
    by_id = {s.id: s for s in earlier}
    if retro.mode == "off" or not earlier:
        return []
    if (done := stage_done(stage)) is not None:
        return [by_id[i] for i in done["selected"] if i in by_id]
    info(f"[pipeline] stage retro{k} ({retro.mode}) -> {stage}")
    nxt = cfg.curriculum.phases[k]
    fitting = filter_by_length(earlier, tokenizer, nxt.max_input_tokens).kept
    if retro.mode == "offline":
        next_cfg = phase_config(cfg, nxt, init_from=policy_path, steps=1)
        policy = load_policy(ModelConfig(**{**cfg.model.model_dump(), "path": policy_path}), device)
        scores = score_offline(next_cfg, policy, tokenizer, fitting, retro.samples, seed_key=f"retro{k}",
                               metric=retro.metric, dist=dist)
    else:
        store = DifficultyStore()
        for j in range(1, k + 1):
            store.observe_file(out / f"phase{j}" / "item_scores.jsonl")
        if dist.is_main:
            store.save(stage / "difficulty.jsonl")
        scores = store.scores((s.id for s in fitting), retro.metric)
    selected, scored = select_hard(scores, retro)
    if dist.is_main:
        save_selection(stage, scored, selected, {"mode": retro.mode, "metric": retro.metric,
                                                 "difficulty": retro.difficulty, "policy": policy_path})
    info(f"[pipeline] retro{k}: carrying {len(selected)} of {len(scored)} earlier items into {nxt.name}")
    mark_done(stage, dist, selected=[s.id for s in selected])
    return [by_id[s.id] for s in selected]


def run_phases(cfg: Config, out: Path, start_from: str, tokenizer, device: torch.device, dist: Dist = SINGLE) -> str:
    """Every curriculum phase in turn (with retrospective sampling between); returns the final weights."""

    weights, earlier, carried = start_from, [], []
    for k, phase in enumerate(cfg.curriculum.phases, start=1):
        if k > 1:
            carried = run_retrospective(cfg, out, k - 1, weights, earlier, tokenizer, device, dist)
        stage = out / f"phase{k}"
        items = phase_items(cfg, k, tokenizer, carried, stage, dist)
        if (done := stage_done(stage)) is None:
            info(f"[pipeline] stage phase{k} ({phase.name}) -> {stage}")
            steps = phase_steps(phase, len(items), prompts_per_round(cfg, phase))
            phase_cfg = phase_config(cfg, phase, init_from=weights, steps=steps)
            done = mark_done(stage, dist, final=str(train(phase_cfg, stage, items=items, phase=phase.name)),
                             phase=phase.name)
        weights = done["final"]
        earlier += [s for s in items if s.id not in {e.id for e in earlier}]
    return weights


def run_eval(cfg: Config, out: Path, models: dict[str, str], tokenizer, device: torch.device) -> dict[str, dict[str, Any]]:
    """Each named model on the same `eval.benchmarks` items; results under eval/<name>/."""

    suites = load_suites(cfg.eval.benchmarks, cfg.eval.data_dir, cfg.eval.synthetic, cfg.eval.limit, tokenizer,
                         protocol=cfg.eval.protocol)
    summaries = {}
    for name, path in models.items():
        stage = out / "eval" / name
        if (done := stage_done(stage)) is not None:
            summaries[name] = done["summary"]
            continue
        info(f"[pipeline] stage eval/{name} ({path}) -> {stage}")
        model_cfg = ModelConfig(**{**cfg.model.model_dump(), "path": path})
        backend = LocalBackend(load_policy(model_cfg, device), tokenizer, name=name,
                               batch_size=cfg.eval.batch_size)
        summary = evaluate(backend, tokenizer, suites, cfg.eval, build_reward(cfg), stage, seed=cfg.run.seed,
                           progress=cfg.run.progress)
        summaries[name] = mark_done(stage, summary=summary)["summary"]
    return summaries


def run_pipeline(cfg: Config, out: str | Path) -> dict[str, Any]:
    """Run (or resume) the whole recipe in `out`; returns {"models": {...}, "eval": {name: summary}}."""

    out = check_run_dir(out, cfg)                  # refuses a different config; writes nothing
    dist, device = setup(cfg.run.device)           # torchrun: this rank's place and device
    tokenizer = load_tokenizer(cfg.model)          # a bad model.path fails here, before the run directory is made
    prepare_run_dir(out, cfg)
    sft_weights = run_sft(cfg, out, dist)
    final = run_phases(cfg, out, sft_weights, tokenizer, device, dist)
    models = {"sft" if cfg.sft.data else "base": sft_weights, "rl": final}
    if not dist.is_main:                                            # evaluation and report: rank 0 alone
        return {"models": models, "eval": {}}
    summaries = run_eval(cfg, out, models, tokenizer, device)
    write_report(out)
    result = {"models": models, "eval": summaries}
    atomic_write_json(out / "pipeline.json", {"models": models, "eval": {k: {n: b["score"] for n, b in v["benchmarks"].items()}
                                                                         for k, v in summaries.items()}})
    return result
