"""The QwenLong-L1 recipe as one resumable command: SFT -> phase 1 -> retrospective -> phase 2 ... -> eval.

    longrl pipeline --config configs/demo.yaml --out runs/demo
    longrl pipeline --config configs/qwenlong_l1_32b.yaml --out runs/32b curriculum.phases.1.steps=200

Each stage runs in its own subdirectory of --out:

    sft/        warm-up SFT on `sft.data` (skipped when empty: RL starts from `model.path`)
    phase1/     RL on phase 1's items that fit its `max_input_tokens` (`rl/trainer.py`); with `data.eval`
                and `train.eval_every`, held-out accuracy before the phase and every few steps
                (`val/*` in metrics.jsonl; later phases skip the before-training pass: their starting
                weights were scored at the previous phase's last step)
    retro1/     retrospective sampling: the hardest items of the earlier phases, carried into phase 2
    phase2/     RL from phase 1's final weights on phase 2's new items + the carried ones (below)
    ...
    sft_long/   with `sft.long_control`: the control arm, SFT continued from the SFT checkpoint on the
                RL phases' items (their traces) for as many optimizer steps as RL made
    eval/base/  with `eval.include_base`: model.path, before warm-up SFT
    eval/sft/   the SFT checkpoint (the RL starting point) on `eval.benchmarks`
    eval/sft-long/  the control arm (with `sft.long_control`)
    eval/rl/    the final policy on the same items
    report.md   training dynamics and accuracy against document length (`longrl report`)

A stage that finished writes `stage.json`; rerunning the same command after a crash or Ctrl-C
skips finished stages and resumes the one in progress from its newest checkpoint, so nothing
finished is redone. Each phase's item list is frozen in `phaseK/items.jsonl` on first entry.

What phase k trains on is `curriculum.retrospective.carry` (`curriculum/phases.py:mix_phase`):
`new_plus_carried` (the default, the paper's reading: hard items are carried into the next phase
"alongside its new, longer data") trains on the phase's own items that no earlier phase had in its
list, plus the carried ones; when every phase reads one file (the official run reads DocQA-RL-1.6K
for both), that is the items longer than the previous limit plus the carried hard ones. `replay`
keeps all of the phase's own items and adds each carried item `replay_copies` more times.
`phaseK/items.json` counts data, dropped (too long), seen (in an earlier phase's list), new, carried,
replayed (extra copies, their ids in `replayed_ids`), kept (distinct items) and epoch (draws per epoch).

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

from longrl.config import Config, apply_overrides
from longrl.config.model import ModelConfig
from longrl.console import info
from longrl.curriculum.phases import (
    filter_by_length,
    mix_phase,
    phase_config,
    phase_steps,
    prompts_per_round,
    with_replays,
)
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
from longrl.errors import UserError
from longrl.eval.backends import LocalBackend, eval_model_config
from longrl.eval.benchmarks import load_suites
from longrl.eval.harness import build_reward, evaluate
from longrl.files import atomic_write_json
from longrl.models.loading import load_policy, load_tokenizer
from longrl.report import write_report
from longrl.rl.trainer import train
from longrl.sft.control import long_control_config, traced_items
from longrl.sft.trainer import train_sft
from longrl.tracking import check_run_dir, holds_run_dir, prepare_run_dir, read_metrics


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


def phase_items(cfg: Config, k: int, tokenizer, earlier: list[Sample], carried: list[Sample], stage: Path,
                dist: Dist = SINGLE) -> list[Sample]:
    """Phase k's training list (`mix_phase`: its new items + the carried ones, or replay); frozen on first entry.

    Own items longer than the phase's input limit are dropped; `earlier` (the earlier phases' items)
    says which own items are not new; `carried` items already fit (the retrospective filtered them).
    """
    frozen = stage / "items.jsonl"
    if frozen.exists():                 # distinct items; the replayed copies are listed in items.json
        replayed_ids = json.loads((stage / "items.json").read_text()).get("replayed_ids", [])
        return with_replays(read_samples(frozen).samples, replayed_ids)

    phase, retro = cfg.curriculum.phases[k - 1], cfg.curriculum.retrospective
    own = filter_by_length(load_items(phase.data, tokenizer, cfg.data.skip_bad) if phase.data else [],
                           tokenizer, phase.max_input_tokens)
    mix = mix_phase(own.kept, carried, (s.id for s in earlier), retro.carry, retro.replay_copies)
    counts = {"phase": phase.name, "carry": retro.carry, "data": len(own.kept) + len(own.dropped),
              "dropped": len(own.dropped), **mix.counts, "max_input_tokens": phase.max_input_tokens,
              "max_response_tokens": phase.max_response_tokens, "replayed_ids": [s.id for s in mix.replayed]}
    info(f"[pipeline] {phase.name} (carry: {retro.carry}): {counts['kept']} items ({counts['new']} new, "
         f"{counts['carried']} carried from earlier phases) + {counts['replayed']} replayed copies; of its "
         f"{counts['data']} own items {counts['seen']} were in an earlier phase, {counts['dropped']} do not fit "
         f"{phase.max_input_tokens} tokens")
    if not mix.items and counts["seen"]:
        raise UserError(f"curriculum phase {phase.name!r}: nothing to train on: all {counts['seen']} of its items that fit "
                        "were in an earlier phase and none was carried (carry: new_plus_carried trains on new items and "
                        "carried ones); give it longer data or a larger max_input_tokens, or set "
                        "curriculum.retrospective.carry=replay to train on them again")
    stage.mkdir(parents=True, exist_ok=True)
    if dist.is_main:                    # every rank made the same list; one writes it
        atomic_write_json(stage / "items.json", counts)
        write_samples(frozen, mix.items)
    return mix.epoch()


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
        items = phase_items(cfg, k, tokenizer, earlier, carried, stage, dist)
        if (done := stage_done(stage)) is None:
            info(f"[pipeline] stage phase{k} ({phase.name}) -> {stage}")
            steps = phase_steps(phase, len(items), prompts_per_round(cfg, phase))
            phase_cfg = phase_config(cfg, phase, init_from=weights, steps=steps)
            if k > 1:        # its starting weights were validated at the previous phase's last step
                phase_cfg = apply_overrides(phase_cfg, {"train.eval_before_train": False}, source=f"phase{k}")
            done = mark_done(stage, dist, final=str(train(phase_cfg, stage, items=items, phase=phase.name)),
                             phase=phase.name)
        weights = done["final"]
        known = {e.id for e in earlier}
        earlier += [s for s in {s.id: s for s in items}.values() if s.id not in known]    # each item once
    return weights


def run_sft_long(cfg: Config, out: Path, start_from: str, dist: Dist = SINGLE) -> str | None:
    """The SFT-long control (`sft.long_control`): SFT continued from `start_from` on the RL phases' items
    for as many optimizer steps as the RL phases made (`sft/control.py`); None when not asked for."""
    if not cfg.sft.long_control:
        return None
    stage = out / "sft_long"
    if (done := stage_done(stage)) is not None:
        return done["final"]
    phases = range(1, len(cfg.curriculum.phases) + 1)
    items = traced_items(s for k in phases for s in read_samples(out / f"phase{k}" / "items.jsonl").samples)
    steps = int(sum(row.get("optim/updates") or 0 for k in phases for row in read_metrics(out / f"phase{k}" / "metrics.jsonl")
                    if isinstance(row.get("step"), int) and row["step"] >= 1))
    info(f"[pipeline] stage sft_long -> {stage}: {steps} optimizer steps (as RL made) on the RL phases' "
         f"{len(items)} items, from {start_from}")
    final = train_sft(long_control_config(cfg, start_from, steps), stage, examples=items)
    return mark_done(stage, dist, final=str(final), steps=steps, items=len(items))["final"]


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
        backend = LocalBackend(load_policy(eval_model_config(cfg, path), device).eval(), tokenizer, name=name,
                               batch_size=cfg.eval.batch_size)
        summary = evaluate(backend, tokenizer, suites, cfg.eval, build_reward(cfg), stage, seed=cfg.run.seed,
                           progress=cfg.run.progress)
        summaries[name] = mark_done(stage, summary=summary)["summary"]
    return summaries


@holds_run_dir
def run_pipeline(cfg: Config, out: str | Path) -> dict[str, Any]:
    """Run (or resume) the whole recipe in `out`; returns {"models": {...}, "eval": {name: summary}}."""

    out = check_run_dir(out, cfg)                  # refuses a different config; writes nothing
    dist, device = setup(cfg.run.device)           # torchrun: this rank's place and device
    tokenizer = load_tokenizer(cfg.model)          # a bad model.path fails here, before the run directory is made
    prepare_run_dir(out, cfg)
    sft_weights = run_sft(cfg, out, dist)
    final = run_phases(cfg, out, sft_weights, tokenizer, device, dist)
    sft_long = run_sft_long(cfg, out, sft_weights, dist)
    models = {"base": cfg.model.path} if cfg.eval.include_base and cfg.sft.data else {}
    models["sft" if cfg.sft.data else "base"] = sft_weights
    if sft_long is not None:
        models["sft-long"] = sft_long
    models["rl"] = final
    if not dist.is_main:                                            # evaluation and report: rank 0 alone
        return {"models": models, "eval": {}}
    summaries = run_eval(cfg, out, models, tokenizer, device)
    write_report(out)
    result = {"models": models, "eval": summaries}
    atomic_write_json(out / "pipeline.json", {"models": models, "eval": {k: {n: b["score"] for n, b in v["benchmarks"].items()}
                                                                         for k, v in summaries.items()}})
    return result
