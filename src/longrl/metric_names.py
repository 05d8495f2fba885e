"""The names metrics carry to the experiment trackers: longrl's own, verl's, or both (`run.metric_names`).

    run: {trackers: [tensorboard], metric_names: verl}

    tracker_values({"reward/mean": 0.4, "accuracy": 0.3}, "verl", step=7)
    # {"critic/score/mean": 0.4, "critic/rewards/mean": 0.4, "accuracy": 0.3, "training/global_step": 7.0}

metrics.jsonl always holds longrl's names (report.md, the curriculum and every test read them);
only what goes on to TensorBoard and W&B is renamed, so the panels and scripts a verl user already
has read a longrl run. `verl`: a quantity verl also logs goes under verl's name (some under two:
verl logs the score both as critic/score and, with no KL in the reward, as critic/rewards), the rest
keep longrl's; `both`: every quantity under longrl's name and under verl's. VERL_NAMES is the one
table of renames (README, "Logs, trackers and run directories", shows it; a test keeps the two
equal); DERIVED adds the verl figures that are longrl figures recombined.

The names come from verl's trainer (`compute_data_metrics`, `compute_timing_metrics`,
`compute_throughout_metrics` in verl/trainer/ppo/metric_utils.py, the actor's update metrics, the
DAPO recipe's train/num_gen_batches, validation's val-core/<data_source>/acc/mean@N). The figures
are longrl's, computed as the longrl name says: reward, length and accuracy figures cover every
response generated in the step, refills included (verl's DAPO recipe computes them over the batch it
trains on); actor/pg_loss is the token mean of the clipped surrogate whatever `algo.loss_agg`;
actor/kl_loss is the token mean of the KL estimate (logged with `algo.track_kl` too, when it is not in
the loss). Rows of SFT and pretraining are renamed by the same table (they share optim/lr,
optim/grad_norm, time/step, tokens_per_s with RL).
"""

from __future__ import annotations

STYLES = ("longrl", "verl", "both")

# longrl name -> verl's names for the same quantity.
VERL_NAMES: dict[str, tuple[str, ...]] = {
    "reward/mean": ("critic/score/mean", "critic/rewards/mean"),
    "reward/max": ("critic/score/max", "critic/rewards/max"),
    "reward/min": ("critic/score/min", "critic/rewards/min"),
    "advantage/mean": ("critic/advantages/mean",),
    "advantage/max": ("critic/advantages/max",),
    "advantage/min": ("critic/advantages/min",),
    "response_len/mean": ("response_length/mean",),
    "response_len/max": ("response_length/max",),
    "response_len/min": ("response_length/min",),
    "truncated_frac": ("response_length/clip_ratio",),
    "rollout/prompt_len_mean": ("prompt_length/mean",),
    "rollout/prompt_len_max": ("prompt_length/max",),
    "rollout/prompt_len_min": ("prompt_length/min",),
    "loss/policy": ("actor/pg_loss",),
    "loss/clip_frac": ("actor/pg_clipfrac",),
    "entropy": ("actor/entropy",),
    "kl": ("actor/kl_loss",),
    "optim/grad_norm": ("actor/grad_norm",),
    "optim/lr": ("actor/lr",),
    "rollout/tokens": ("perf/total_num_tokens",),
    "memory/peak_gb": ("perf/max_memory_allocated_gb",),
    "time/rollout": ("timing_s/gen",),
    "time/reward": ("timing_s/reward",),
    "time/update": ("timing_s/update_actor",),
    "time/step": ("timing_s/step", "perf/time_per_step"),
    "time/val": ("timing_s/testing",),
}

# verl name -> (what it is made of, in words): figures verl logs that longrl's recombine (`derived`).
DERIVED = {
    "perf/throughput": "tokens_per_s / dist/world_size (tokens per second per rank)",
    "train/num_gen_batches": "rollout/refills + 1 (generation rounds of the step)",
    "training/global_step": "the row's step",
    "val-core/<task>/acc/mean@N": "val/<task>/accuracy (N = rollout.validation.n)",
}


def derived(values: dict[str, float], step: int | None = None, val_n: int = 1) -> dict[str, float]:
    """The DERIVED figures `values` (a row's numeric values) allow: verl's names only."""
    out: dict[str, float] = {}
    if "tokens_per_s" in values:
        out["perf/throughput"] = values["tokens_per_s"] / max(values.get("dist/world_size", 1.0), 1.0)
    if "rollout/refills" in values:
        out["train/num_gen_batches"] = values["rollout/refills"] + 1.0
    if step is not None:
        out["training/global_step"] = float(step)
    for key, value in values.items():
        if _is_val_accuracy(key):                                   # val/<task>/accuracy
            out[f"val-core/{key.split('/')[1]}/acc/mean@{val_n}"] = value
    return out


def tracker_values(values: dict[str, float], style: str, step: int | None = None, val_n: int = 1) -> dict[str, float]:
    """`values` (longrl's names) under the names `style` asks for.

    Args:
        values: a metrics row's numeric values.
        style: "longrl" (unchanged), "verl" (verl's name where verl has the quantity, longrl's for
            the rest) or "both" (every longrl name, plus verl's).
        step: the row's step (verl logs it as training/global_step).
        val_n: samples per held-out item in validation (verl's mean@N).
    """
    if style not in STYLES:
        raise ValueError(f"unknown metric names {style!r}; known: {', '.join(STYLES)}")
    if style == "longrl":
        return dict(values)
    verl: dict[str, float] = {}
    for key, value in values.items():
        for name in VERL_NAMES.get(key, ()):
            verl[name] = value
    verl.update(derived(values, step, val_n))
    if style == "both":
        return {**values, **verl}
    kept = {key: value for key, value in values.items() if key not in VERL_NAMES and not _is_val_accuracy(key)}
    return {**kept, **verl}


def _is_val_accuracy(key: str) -> bool:
    """val/<task>/accuracy (not val/accuracy, the mean over every task: verl has no such figure)."""
    parts = key.split("/")
    return len(parts) == 3 and parts[0] == "val" and parts[2] == "accuracy"
