"""`longrl report DIR`: report.md with the training dynamics and accuracy against document length.

Reads what a pipeline (or a single `longrl rl` run) left in DIR:

    phase*/metrics.jsonl (or metrics.jsonl)  per step: reward, accuracy (and accuracy/<task>), validation
                                              (val/*), filtered groups, entropy, KL, clip fraction, grad
                                              norm, response length, update/skipped
    phase*/items.json, retro*/selection.json  items kept / new / dropped / carried / replayed per phase
    eval/<model>/summary.json                 scores per benchmark with their standard errors (synthetic-<length>
                                              suites give the accuracy-against-length curve)
    config.yaml                               the run's name; optim.grad_clip (drawn on the grad-norm panel)

and writes DIR/report.md with two PNG figures beside it:

  dynamics.png             one panel per quantity logged, against the RL step of all phases (phases divided
                           by dotted lines, named on top): reward; rollout accuracy and held-out accuracy
                           (validation during RL), each over all tasks (black) and per task (one colour per
                           task in both); the share of groups filtered; entropy; KL; clip fraction; grad norm
                           before clipping (with the clip threshold); response length (mean, max). Steps with
                           no update (every group filtered: `update/skipped`) are shaded red, and what only
                           an update gives (entropy, KL, clip fraction, grad norm) has a gap there.
  accuracy_by_length.png   each evaluated model (base, SFT, SFT-long, RL) by document length, ±2 standard
                           errors over items as error bars, the item count in the legend.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from longrl.errors import DataError
from longrl.files import atomic_write_text
from longrl.limits import load_json
from longrl.tracking import read_metrics

SYNTHETIC = re.compile(r"^synthetic-(\d+)$")
TRAIN_TASK = re.compile(r"^accuracy/([^/]+)$")          # accuracy/<task>: the step's responses to items of a task
VAL_TASK = re.compile(r"^val/([^/]+)/accuracy$")        # val/<task>/accuracy: validation during RL, per task


@dataclass(frozen=True)
class Panel:
    """One plot of `dynamics.png`: `keys` in black (the first solid, the others dashed, dotted; named by
    `labels`), and one coloured line per task when `tasks` matches per-task keys of the rows."""

    title: str
    keys: tuple[str, ...]
    tasks: re.Pattern | None = None
    labels: tuple[str, ...] = ()
    markers: bool = False                               # sparse series (validation): every point marked


STYLES = ["-", "--", ":"]          # a panel's first key solid, the second dashed, the third dotted
PANELS = [
    Panel("reward (mean)", ("reward/mean",)),
    Panel("rollout accuracy", ("accuracy",), TRAIN_TASK, ("all tasks",)),
    Panel("held-out accuracy (validation)", ("val/accuracy",), VAL_TASK, ("all tasks",), markers=True),
    Panel("groups filtered (uniform: no signal)", ("filtered_groups_frac",)),
    Panel("entropy", ("entropy",)),
    Panel("KL to reference", ("kl",)),
    Panel("clip fraction", ("loss/clip_frac", "loss/clip_frac_low", "loss/clip_frac_high"),
          labels=("all", "low side", "high side")),
    Panel("grad norm (before clipping)", ("optim/grad_norm",)),
    Panel("response length (tokens)", ("response_len/mean", "response_len/max"), labels=("mean", "max")),
]


def phase_runs(run_dir: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """(phase name, metric rows) in training order: phase1, phase2, ... or a single run's metrics."""
    dirs = sorted((p for p in run_dir.glob("phase*") if (p / "metrics.jsonl").exists()), key=lambda p: _index(p.name))
    if not dirs and (run_dir / "metrics.jsonl").exists():
        dirs = [run_dir]
    runs = []
    for d in dirs:
        rows = [row for row in read_metrics(d / "metrics.jsonl") if _is_number(row.get("step"))]
        name = rows[0].get("phase", d.name) if rows else d.name
        runs.append((str(name), rows))
    return runs


def _index(name: str) -> int:
    digits = re.sub(r"\D", "", name)
    return int(digits) if digits else 0


ARM_ORDER = {"base": 0, "sft": 1, "sft-long": 2, "rl": 3}      # the pipeline's arms in training order; others after


def eval_summaries(run_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    paths = sorted((run_dir / "eval").glob("*/summary.json"), key=lambda p: (ARM_ORDER.get(p.parent.name, 9), p.parent.name))
    for path in paths:
        summary = read_json(path)
        benchmarks = summary.get("benchmarks")
        if not isinstance(benchmarks, dict) or not _is_number(summary.get("average")):
            raise DataError(str(path), "file", "benchmarks", "not an eval summary (expected benchmarks and average)")
        for name, entry in benchmarks.items():
            if not isinstance(entry, dict) or not _is_number(entry.get("score")) or not _is_number(entry.get("n")):
                raise DataError(str(path), f"benchmark {name!r}", "score", "expected an object with a numeric score and n")
        out[path.parent.name] = summary
    return out


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file a run left behind; DataError naming the file if it is not one."""
    try:
        obj = load_json(path.read_bytes())
    except OSError as exc:
        raise DataError(str(path), "open", None, f"cannot read file: {exc.strerror or exc}") from None
    except ValueError as exc:  # not UTF-8, not JSON, or nested past longrl.limits
        raise DataError(str(path), "file", None, f"not readable JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise DataError(str(path), "file", None, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _value(row: dict[str, Any], key: str) -> float | None:
    """The plotted value of `key` in a row: a number; NaN (a gap in the line) where the row holds null (a
    NaN the step logged: loss, entropy, grad norm of a step with no update); None where the row lacks the key."""
    if key not in row:
        return None
    value = row[key]
    return float(value) if _is_number(value) else math.nan


def line(rows: list[dict[str, Any]], key: str, offset: int = 0) -> tuple[list[float], list[float]]:
    """(steps + offset, values) of `key` in the rows that have it; NaN where a row logged null, so the
    plotted line has a gap there (a step with no update), never a segment across it."""
    points = [(offset + row["step"], v) for row in rows if (v := _value(row, key)) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _spans(steps: list[float]) -> list[tuple[float, float]]:
    """Consecutive steps merged into (first - 0.5, last + 0.5) spans."""
    spans: list[list[float]] = []
    for s in sorted(steps):
        if spans and s - spans[-1][1] <= 1:
            spans[-1][1] = s
        else:
            spans.append([s, s])
    return [(a - 0.5, b + 0.5) for a, b in spans]


def plot_dynamics(runs: list[tuple[str, list[dict[str, Any]]]], path: Path, grad_clip: float | None = None) -> bool:
    """`dynamics.png`: one panel per quantity logged (PANELS), steps of all phases on one axis, phases
    divided by dotted lines and named on top. Black lines are over all tasks; coloured lines are one task
    each (the same colour in every panel). Steps with no update (every group filtered) are shaded red, and
    the update's figures (entropy, KL, clip fraction, grad norm) have a gap there, never a line across."""
    import matplotlib  # lazy: slow to import; only plots need it, and the Agg backend is set first

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the backend is chosen
    from matplotlib.ticker import MaxNLocator  # lazy: as matplotlib

    rows_all = [row for _, rows in runs for row in rows]
    tasks = sorted({m.group(1) for row in rows_all for key in row for pattern in (TRAIN_TASK, VAL_TASK)
                    if (m := pattern.match(key))})
    panels = []
    for panel in PANELS:
        keys = [k for k in panel.keys if any(_is_number(row.get(k)) for row in rows_all)]
        if keys:
            panels.append((panel, keys))
    if not panels:
        return False
    cols = 2 if len(panels) > 3 else 1
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6.2 * cols, 2.3 * nrows + 0.6), sharex=True, squeeze=False)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {task: palette[i % len(palette)] for i, task in enumerate(tasks)}
    offsets, skipped, offset = [], [], 0
    for _, rows in runs:
        offsets.append(offset)
        skipped += [offset + row["step"] for row in rows if row.get("update/skipped")]
        offset = max([offset] + [offset + row["step"] for row in rows])
    for ax, (panel, keys) in zip(axes.flat, panels):
        used: set[str] = set()                           # legend labels already given (one entry per series)
        for (_, rows), base in zip(runs, offsets):
            per_task = sorted({(m.group(1), k) for row in rows for k in row if panel.tasks and (m := panel.tasks.match(k))})
            series = []
            for key in keys:
                j = panel.keys.index(key)
                named = panel.labels and (len(keys) > 1 or per_task)     # a lone black line needs no legend
                series.append((key, "k", STYLES[j % len(STYLES)], 1.6 if j == 0 else 1.0, panel.labels[j] if named else None))
            series += [(key, colour[task], "-", 1.0, task) for task, key in per_task]
            for key, c, style, width, label in series:
                xs, ys = line(rows, key, base)
                if not xs:
                    continue
                points = list(zip(xs, ys))
                marker = "o" if panel.markers else "." if len(points) < 40 else None
                ax.plot(xs, ys, color=c, linestyle=style, linewidth=width, alpha=1.0 if c == "k" else 0.75,
                        marker=marker, markersize=3.5 if marker == "o" else 4,
                        label=label if label and label not in used else None)
                used.add(label)
                lone = [(x, y) for i, (x, y) in enumerate(points) if marker is None and not math.isnan(y)
                        and all(not 0 <= k < len(ys) or math.isnan(ys[k]) for k in (i - 1, i + 1))]
                if lone:                                 # a value between two gaps: a point, or it would not show
                    ax.plot(*zip(*lone), color=c, linestyle="none", marker=".", markersize=4)
        for a, b in _spans(skipped):
            ax.axvspan(a, b, color="tab:red", alpha=0.13, linewidth=0)
        for base in offsets[1:]:
            ax.axvline(base + 0.5, color="grey", linewidth=0.8, linestyle=":")
        if panel.title.startswith("grad norm") and grad_clip is not None:
            ax.axhline(grad_clip, color="grey", linewidth=0.8, linestyle="--", label=f"clip at {grad_clip:g}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))      # steps are whole numbers
        ax.set_title(panel.title, fontsize="medium", loc="left")
        ax.grid(alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="x-small", ncol=2)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    for ax in axes[0, :]:
        for (phase, rows), base in zip(runs, offsets):
            steps = [row["step"] for row in rows if row["step"] >= 1]
            if len(runs) > 1 and steps:
                ax.text(base + (min(steps) + max(steps)) / 2, 1.02, phase, transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize="small", color="dimgrey")
    for col in range(cols):
        bottom = max(r for r in range(nrows) if r * cols + col < len(panels))
        axes[bottom, col].set_xlabel("RL step (all phases)")
        axes[bottom, col].xaxis.set_tick_params(labelbottom=True)
    notes = []
    if skipped:
        notes.append(f"shaded red: {len(skipped)} step(s) with no update (every group filtered)")
    if tasks:
        notes.append("black: all tasks; colours: one task each")
    if notes:
        fig.text(0.5, 0.005, ";  ".join(notes), ha="center", va="bottom", fontsize="small", color="dimgrey")
    fig.tight_layout(rect=(0, 0.03 if notes else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def standard_error(entry: dict[str, Any]) -> tuple[float | None, bool]:
    """(score_se, computed): the summary's standard error of the score (x100), or, for an older summary of
    one sample per item (binary scores), sqrt(p (1 - p) / n); (None, False) when neither is known."""
    se = entry.get("score_se")
    if _is_number(se):
        return float(se), False
    if entry.get("samples", 1) == 1 and entry["n"] > 0 and 0 <= entry["score"] <= 100:
        p = entry["score"] / 100
        return 100 * math.sqrt(p * (1 - p) / entry["n"]), True
    return None, False


def length_curves(summaries: dict[str, dict[str, Any]]) -> dict[str, list[tuple[int, float, float | None, int]]]:
    """model -> [(document length, score, standard error or None, n)] over its synthetic-<length> suites."""
    curves = {}
    for model, summary in summaries.items():
        points = sorted((int(m.group(1)), float(b["score"]), standard_error(b)[0], int(b["n"]))
                        for name, b in summary["benchmarks"].items() if (m := SYNTHETIC.match(name)))
        if points:
            curves[model] = points
    return curves


def curve_label(model: str, points: list[tuple[int, float, float | None, int]]) -> str:
    """The legend entry of a model's curve: "rl (n=45 per length)", or "rl (n=30-45 per length)"."""
    ns = sorted({n for *_, n in points})
    return f"{model} (n={ns[0]} per length)" if len(ns) == 1 else f"{model} (n={ns[0]}-{ns[-1]} per length)"


def plot_accuracy_by_length(summaries: dict[str, dict[str, Any]], path: Path) -> bool:
    """`accuracy_by_length.png`: each model's score on the synthetic-<length> suites with ±2 standard
    errors over items, its item count in the legend; the models side by side at each length."""
    import matplotlib  # lazy: slow to import; only plots need it, and the Agg backend is set first

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the backend is chosen

    curves = length_curves(summaries)
    if not curves:
        return False
    lengths = sorted({p[0] for points in curves.values() for p in points})
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    lowest = 100.0
    for i, (model, points) in enumerate(curves.items()):
        shift = 2 ** (0.035 * (i - (len(curves) - 1) / 2))          # side by side: a small factor on a log axis
        xs = [length * shift for length, *_ in points]
        ys = [score for _, score, _, _ in points]
        bars = [2 * se if se is not None else 0.0 for _, _, se, _ in points]   # ±2 SE, cut at 0% and 100%
        yerr = [[min(b, y) for b, y in zip(bars, ys)], [min(b, 100 - y) for b, y in zip(bars, ys)]]
        lowest = min([lowest] + [y - b for y, b in zip(ys, yerr[0])])
        ax.errorbar(xs, ys, yerr=yerr, marker="o", markersize=4, capsize=3, linewidth=1.4,
                    label=curve_label(model, points))
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [f"{length:,}" for length in lengths])
    ax.minorticks_off()
    ax.set_xlabel("document length (prompt tokens)")
    ax.set_ylabel("accuracy (%), ±2 SE")
    ax.set_ylim(max(0.0, 10 * math.floor((lowest - 5) / 10)) - 3, 103)    # to 100%, from a round 10 below the lowest bar
    ax.legend(fontsize="small", loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def phase_table(run_dir: Path, runs: list[tuple[str, list[dict[str, Any]]]]) -> list[str]:
    lines = ["| phase | steps | items kept | new | dropped (too long) | carried in | replayed copies | reward first -> last "
             "| accuracy first -> last | held-out accuracy first -> last |", "|---|---|---|---|---|---|---|---|---|---|"]
    counts = {}
    for path in run_dir.glob("phase*/items.json"):
        info = read_json(path)
        counts[info.get("phase", path.parent.name)] = info
    for phase, rows in runs:
        c = counts.get(phase, {})
        reward = _first_last(rows, "reward/mean")
        acc = _first_last(rows, "accuracy")
        val = _first_last(rows, "val/accuracy")
        steps = sum(1 for r in rows if r["step"] >= 1)               # step 0: the validation before training
        cells = [c.get(key, "-") for key in ("kept", "new", "dropped", "carried", "replayed")]
        lines.append(f"| {phase} | {steps} | {' | '.join(map(str, cells))} | {reward} | {acc} | {val} |")
    return lines


def _first_last(rows: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in rows if _is_number(r.get(key))]
    return f"{values[0]:.3f} -> {values[-1]:.3f}" if values else "-"


def eval_table(summaries: dict[str, dict[str, Any]]) -> list[str]:
    names = sorted({n for s in summaries.values() for n in s["benchmarks"]},
                   key=lambda n: (0, int(m.group(1))) if (m := SYNTHETIC.match(n)) else (1, n))
    lines = ["| model | " + " | ".join(names) + " | Avg |", "|" + "---|" * (len(names) + 2)]
    for model, s in summaries.items():
        cells = [_score_cell(s["benchmarks"][n]) if n in s["benchmarks"] else "-" for n in names]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {s['average']:.1f} |")
    return lines


def _score_cell(entry: dict[str, Any]) -> str:
    """"78.4 ± 3.7 (n=500)": the score with 2 standard errors over items when known (`standard_error`;
    "†" marks one computed from the score and n)."""
    se, computed = standard_error(entry)
    interval = f" ± {2 * se:.1f}{'†' if computed else ''}" if se is not None else ""
    return f"{entry['score']:.1f}{interval} (n={entry['n']})"


def run_config(run_dir: Path) -> dict[str, Any]:
    """The run's config.yaml as a dict ({} when it is missing or unreadable: the report does without)."""
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def run_label(run_dir: Path) -> str:
    """`run.name` of the run's config.yaml with the directory (`demo (runs/demo)`), or the directory alone."""
    run = run_config(run_dir).get("run")
    name = run.get("name") if isinstance(run, dict) else None
    return f"{name} ({run_dir.name})" if isinstance(name, str) and name and name != run_dir.name else run_dir.name


def grad_clip(run_dir: Path) -> float | None:
    """`optim.grad_clip` of the run's config (the dashed line of the grad-norm panel), if recorded."""
    optim = run_config(run_dir).get("optim")
    value = optim.get("grad_clip") if isinstance(optim, dict) else None
    return float(value) if _is_number(value) and value > 0 else None


def write_report(run_dir: str | Path) -> Path:
    """Write `report.md` (+ PNGs) for the run in `run_dir`; returns the report path."""
    run_dir = Path(run_dir)
    runs = phase_runs(run_dir)
    summaries = eval_summaries(run_dir)
    lines = [f"# longrl report: {run_label(run_dir)}", ""]
    if summaries:
        lines += ["## Evaluation", "", "Scores are mean accuracy x 100 (pass@1) ± 2 standard errors over items.", "",
                  *eval_table(summaries), ""]
        if any(standard_error(b)[1] for s in summaries.values() for b in s["benchmarks"].values()):
            lines += ["† the summary has no score_se: the interval is binomial, from the score and n.", ""]
        if plot_accuracy_by_length(summaries, run_dir / "accuracy_by_length.png"):
            lines += ["![accuracy against document length, ±2 standard errors; n per length in the legend]"
                      "(accuracy_by_length.png)", ""]
    if runs:
        lines += ["## Training dynamics", ""]
        if plot_dynamics(runs, run_dir / "dynamics.png", grad_clip(run_dir)):
            lines += ["![reward, rollout and held-out accuracy (per task), filtered groups, entropy, KL, clip fraction, "
                      "grad norm and response length per step, by phase](dynamics.png)", "",
                      "Black lines are over all tasks, coloured ones one task each. Red bands: steps with no update "
                      "(every group filtered); the update's figures have a gap there.", ""]
        skipped = [f"{phase} {row['step']}" for phase, rows in runs for row in rows if row.get("update/skipped")]
        if skipped:
            lines += [f"Steps with no update ({len(skipped)}): {', '.join(skipped)}.", ""]
        lines += [*phase_table(run_dir, runs), ""]
    for path in sorted(run_dir.glob("retro*/selection.json")):
        sel = read_json(path)
        lines.append(f"- {path.parent.name} ({sel.get('mode')}): {sel.get('count', '?')} of {sel.get('scored', '?')} earlier "
                     f"items carried; {sel.get('solved_all', '?')} always solved, {sel.get('solved_none', '?')} never solved.")
    if not runs and not summaries:
        lines.append("Nothing to report yet: no metrics.jsonl and no eval/*/summary.json under this directory.")
    report = run_dir / "report.md"
    atomic_write_text(report, "\n".join(lines).rstrip() + "\n")
    return report
