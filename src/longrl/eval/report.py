"""Evaluation results: `summary.json` and a markdown table in the layout of the paper's main table.

    summary = build_summary(suites, finished_rows, cfg, model_name, reward)
    write_reports(out, summary)          # OUT/summary.json, OUT/results.md
    print(results_markdown(summary))

summary.json = {"benchmarks": {name: {"score", "n", "samples", "version", "display", "pass@k"...,
"prompt_tokens/mean", "prompt_truncated_frac", "response_tokens/mean", "response_truncated_frac",
"rule/strict", "rule/published", "reward/*"}}, "average", "model", "judge", "protocol", "config"}. The
markdown names the protocol that produced the scores and adds a table of the rule scores of the
same completions under both protocols. The table has one column per benchmark
(DocMath | Frames | 2Wiki | HotpotQA | MuSiQue | NarrativeQA | Qasper) and the average, as in
the published reference results, so rows can be pasted next to the published ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from longrl.console import print_table
from longrl.eval.metrics import benchmark_metrics
from longrl.files import atomic_write_text
from longrl.rewards.hybrid import RewardResult, summarize
from longrl.secrets import scrub_urls

PROTOCOL_WORDS = {"published": "prompts and rule scoring as the published QwenLong-L1 scripts",
                  "strict": "longrl's prompts and rule scoring, published holes closed"}


def _reward_summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    results = [RewardResult(score=float(r["score"]), rule_score=float(r["rule_score"]), judge_score=r.get("judge_score"),
                            prediction=r.get("prediction"), status=r.get("status", "ok"), penalty=0.0,
                            metrics=dict(r.get("metrics") or {}), judge_error=r.get("judge_error"),
                            judge_cached=bool(r.get("judge_cached", False))) for r in rows]
    return summarize(results)


def build_summary(suites: dict, finished: dict[str, dict[str, list[dict[str, Any]]]], cfg, model: str, reward) -> dict[str, Any]:
    """The summary of every suite from its finished rows (only the suite's current items count)."""
    benchmarks = {}
    for name, suite in suites.items():
        items = [finished[name][s.id] for s in suite.samples if s.id in finished[name]]
        entry: dict[str, Any] = {"display": suite.display, "version": suite.version, "n": len(items), "samples": cfg.samples}
        if suite.source:
            entry["source"], entry["data_sha256"] = suite.source, suite.sha256
        entry.update(benchmark_metrics(items, [1, *cfg.pass_k]))
        entry.update(_reward_summary([r for rows in items for r in rows]))
        benchmarks[name] = entry
    scores = [b["score"] for b in benchmarks.values()]
    judge = reward.cfg.judge
    return {
        "benchmarks": benchmarks,
        "average": sum(scores) / len(scores) if scores else 0.0,
        "model": model,
        "judge": judge.model if judge is not None else None,
        "protocol": cfg.protocol,
        "config": scrub_urls(cfg.model_dump(mode="json")),
    }


def results_markdown(summary: dict[str, Any]) -> str:
    """The paper-style table (scores x100, one decimal) with the protocol underneath."""
    benchmarks = summary["benchmarks"]
    cfg = summary["config"]
    header = ["model", *(b["display"] for b in benchmarks.values()), "Avg"]
    row = [summary["model"], *(f"{b['score']:.1f}" for b in benchmarks.values()), f"{summary['average']:.1f}"]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), "| " + " | ".join(row) + " |"]
    ks = sorted({int(k.split("@")[1]) for b in benchmarks.values() for k in b if k.startswith("pass@")} - {1})
    for k in ks:
        values = [b.get(f"pass@{k}") for b in benchmarks.values()]
        shown = [f"{v:.1f}" if v is not None else "-" for v in values]
        known = [v for v in values if v is not None]
        table.append("| " + " | ".join([f"{summary['model']} (pass@{k})", *shown, f"{sum(known) / len(known):.1f}"]) + " |")
    protocol = summary.get("protocol") or cfg.get("protocol", "strict")
    lines = [f"# Evaluation: {summary['model']} (protocol: {protocol})", "", *table, ""]
    items = ", ".join(f"{b['display']} {b['n']}" for b in benchmarks.values())
    truncation = f"{cfg['max_input_tokens']} input tokens (middle truncation)" if cfg.get("max_input_tokens") else "no input truncation"
    lines += [
        f"Score: mean over items of max(rule, judge) x 100, pass@1 over {cfg['samples']} sample(s) per item; "
        "Avg: unweighted mean over the benchmarks.",
        f"Items: {items}.",
        f"Protocol: {protocol} ({PROTOCOL_WORDS.get(protocol, protocol)}); {truncation}, {cfg['max_new_tokens']} new "
        f"tokens, temperature {cfg['temperature']:g}, top_p {cfg['top_p']:g}; judge: {summary['judge'] or 'none (rule only)'}.",
        "",
    ]
    if all(f"rule/{p}" in b for b in benchmarks.values() for p in ("strict", "published")):
        lines += ["Rule scores of the same completions under both protocols (no judge; x100):", "",
                  "| rule protocol | " + " | ".join(b["display"] for b in benchmarks.values()) + " | Avg |",
                  "|" + "---|" * (len(benchmarks) + 2)]
        for p in ("published", "strict"):
            values = [b[f"rule/{p}"] for b in benchmarks.values()]
            lines.append(f"| {p} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {sum(values) / len(values):.1f} |")
        lines.append("")
    return "\n".join(lines)


def write_reports(out: str | Path, summary: dict[str, Any]) -> None:
    out = Path(out)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")  # benchmarks keep their order
    atomic_write_text(out / "results.md", results_markdown(summary))


def print_results(summary: dict[str, Any]) -> None:
    """The table on stdout (rich), one row per model as in the paper."""

    benchmarks = summary["benchmarks"]
    columns = ["model", *(b["display"] for b in benchmarks.values()), "Avg"]
    rows = [[summary["model"], *(f"{b['score']:.1f}" for b in benchmarks.values()), f"{summary['average']:.1f}"]]
    print_table("Evaluation (score x100)", columns, rows)


def flat_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """`eval/<benchmark>/<metric>` numbers for a metrics log, plus `eval/average`."""
    out = {"eval/average": float(summary["average"])}
    for name, entry in summary["benchmarks"].items():
        for key, value in entry.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[f"eval/{name}/{key}"] = float(value)
    return out
