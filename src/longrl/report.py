"""`longrl report DIR`: report.md with the training dynamics and accuracy against document length.

Reads what a pipeline (or a single `longrl rl` run) left in DIR:

    phase*/metrics.jsonl (or metrics.jsonl)  reward, entropy, KL, response length per step
    phase*/items.json, retro*/selection.json  items kept / new / dropped / carried / replayed per phase
    eval/<model>/summary.json                 scores per benchmark (synthetic-<length> suites give the
                                              accuracy-against-length curve)

and writes DIR/report.md with two PNG figures beside it: `dynamics.png` (the paper's
training-dynamics figure: reward, held-out accuracy (validation during RL, when logged), entropy,
KL and response length against step, coloured by phase) and `accuracy_by_length.png` (the SFT-only and the RL policy by document length).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from longrl.errors import DataError
from longrl.files import atomic_write_text
from longrl.limits import load_json
from longrl.tracking import read_metrics

PANELS = [("reward/mean", "reward"), ("val/accuracy", "held-out accuracy"), ("entropy", "entropy"),
          ("kl", "KL to reference"), ("response_len/mean", "response length (tokens)")]
SYNTHETIC = re.compile(r"^synthetic-(\d+)$")


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


def plot_dynamics(runs: list[tuple[str, list[dict[str, Any]]]], path: Path) -> bool:
    import matplotlib  # lazy: slow to import; only plots need it, and the Agg backend is set first

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the backend is chosen

    panels = [(k, label) for k, label in PANELS if any(k in row for _, rows in runs for row in rows)]
    if not panels:
        return False
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.2 * len(panels)), sharex=True, squeeze=False)
    offset = 0
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (phase, rows) in enumerate(runs):
        steps = [offset + row["step"] for row in rows]
        for ax, (key, label) in zip(axes[:, 0], panels):
            points = [(s, row[key]) for s, row in zip(steps, rows) if _is_number(row.get(key))]
            if points:
                ax.plot(*zip(*points), color=colours[i % len(colours)], label=phase, marker="." if len(points) < 40 else None)
            ax.set_ylabel(label)
        offset = max(steps, default=offset)
        for ax in axes[:, 0]:
            if i < len(runs) - 1:
                ax.axvline(offset + 0.5, color="grey", linewidth=0.5, linestyle=":")
    if axes[0, 0].get_legend_handles_labels()[0]:  # no line when the first panel's values are all missing
        axes[0, 0].legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("RL step (all phases)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_accuracy_by_length(summaries: dict[str, dict[str, Any]], path: Path) -> bool:
    import matplotlib  # lazy: slow to import; only plots need it, and the Agg backend is set first

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the backend is chosen

    curves = {}
    for model, summary in summaries.items():
        points = sorted((int(m.group(1)), b["score"]) for name, b in summary["benchmarks"].items() if (m := SYNTHETIC.match(name)))
        if points:
            curves[model] = points
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for model, points in curves.items():
        ax.plot(*zip(*points), marker="o", label=model)
    ax.set_xlabel("document length (prompt tokens)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend()
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
    """"78.4 ± 3.7 (n=500)": the score with 2 standard errors over items, when the summary has them."""
    se = entry.get("score_se")
    interval = f" ± {2 * se:.1f}" if _is_number(se) else ""
    return f"{entry['score']:.1f}{interval} (n={entry['n']})"


def run_label(run_dir: Path) -> str:
    """`run.name` of the run's config.yaml with the directory (`demo (runs/demo)`), or the directory alone."""
    try:
        name = (yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}).get("run", {}).get("name")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        name = None
    return f"{name} ({run_dir.name})" if isinstance(name, str) and name and name != run_dir.name else run_dir.name


def write_report(run_dir: str | Path) -> Path:
    """Write `report.md` (+ PNGs) for the run in `run_dir`; returns the report path."""
    run_dir = Path(run_dir)
    runs = phase_runs(run_dir)
    summaries = eval_summaries(run_dir)
    lines = [f"# longrl report: {run_label(run_dir)}", ""]
    if summaries:
        lines += ["## Evaluation", "", "Scores are mean accuracy x 100 (pass@1) ± 2 standard errors over items.", "",
                  *eval_table(summaries), ""]
        if plot_accuracy_by_length(summaries, run_dir / "accuracy_by_length.png"):
            lines += ["![accuracy against document length](accuracy_by_length.png)", ""]
    if runs:
        lines += ["## Training dynamics", ""]
        if plot_dynamics(runs, run_dir / "dynamics.png"):
            lines += ["![reward, held-out accuracy, entropy, KL and response length per step, by phase](dynamics.png)", ""]
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
