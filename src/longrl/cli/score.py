"""`longrl score`: score a JSONL file of responses with the hybrid reward.

    longrl score --input responses.jsonl --output scored.jsonl
    longrl score --input responses.jsonl --output scored.jsonl \\
        --judge-url http://127.0.0.1:8000/v1 --judge-model Qwen/Qwen3-8B [--cache-dir DIR]
    longrl score --config configs/eval_docqa7.yaml --input r.jsonl --output s.jsonl reward.numeric_rel_tol=0.01
    longrl score --protocol published --input responses.jsonl --output scored.jsonl   # as the paper's scripts score

Input rows: {"id", "task", "question", "response", "answers"} ("answers": a list of gold strings, or one
string) (+ "response_tokens" and "max_response_tokens" when reward.overlong.enabled; an optional
"context", the document, lets the strict numeric verifier see the units it states, e.g. "in
thousands"). `--protocol` (reward.protocol) picks the rule scoring: `strict` (default; published
holes closed) or `published` (as QwenLong-L1's evaluation scripts score, `rewards/published.py`).
Every output row keeps its input fields and
adds "prediction", "status", "rule_score", "judge_score" (null when the judge was not asked),
"score", "metrics" (and "judge_error" / "penalty" when they apply). A summary per task goes to
stdout. A bad row stops the command with an error naming its line; the output is written
atomically, only when every row is scored. The judge's API key comes from the environment
variable named by reward.judge.api_key_env (default LONGRL_JUDGE_API_KEY).
"""

from __future__ import annotations

import argparse
from typing import Any

from longrl.cli.args import add_config_arguments
from longrl.errors import DataError, UserError


def register(sub) -> None:
    p = sub.add_parser("score", help="score responses (rule verifiers + optional LLM judge) in a JSONL file",
                       description="Score a JSONL file of responses with the hybrid reward; writes the rows with "
                                   "prediction, rule_score, judge_score and score, and prints a summary per task.")
    p.add_argument("--input", required=True, metavar="FILE",
                   help='JSONL rows {"id","task","question","response","answers"} (answers: a list or one string)')
    p.add_argument("--output", required=True, metavar="FILE", help="scored JSONL (written atomically)")
    p.add_argument("--judge-url", metavar="URL", help="OpenAI-compatible base URL of the judge, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--judge-model", metavar="NAME", help="judge model name sent in requests")
    p.add_argument("--protocol", choices=["strict", "published"],
                   help="rule scoring: strict (default, holes closed) or published (as the paper's evaluation scripts)")
    p.add_argument("--no-require-think", action="store_true", help="accept responses without </think> (non-reasoning models)")
    p.add_argument("--cache-dir", metavar="DIR", help="judge cache root (entries in DIR/judge); default $XDG_CACHE_HOME/longrl")
    add_config_arguments(p, out=False, example="reward.numeric_rel_tol=0.01 reward.judge.concurrency=8")
    p.set_defaults(handler=run_score)


def build_reward_config(args: argparse.Namespace):
    """The RewardConfig of `--config`, then the command's flags, then `key=value` overrides."""
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.config import parse_override, read_yaml, set_dotted, validate_config

    raw = read_yaml(args.config) if args.config else {}
    has_judge = isinstance(raw.get("reward"), dict) and raw["reward"].get("judge") is not None
    overrides = [parse_override(item) for item in args.overrides]
    has_judge = has_judge or any(key.startswith("reward.judge.") for key, _ in overrides)
    if (args.judge_url is None) != (args.judge_model is None) and not has_judge:
        raise UserError("--judge-url and --judge-model go together (or set reward.judge in the config)")
    if args.cache_dir is not None and args.judge_url is None and not has_judge:
        raise UserError("--cache-dir applies to the judge: give --judge-url/--judge-model or reward.judge in the config")
    flags = [("reward.judge.base_url", args.judge_url), ("reward.judge.model", args.judge_model),
             ("reward.judge.cache_dir", args.cache_dir), ("reward.require_think", False if args.no_require_think else None),
             ("reward.protocol", args.protocol)]
    for key, value in flags:
        if value is not None:
            set_dotted(raw, key, value, source="command-line flags")
    for key, value in overrides:
        set_dotted(raw, key, value, source=f"override {key}")
    source = args.config or "<defaults>"
    return validate_config(raw, source, {key: f"{key}={value!r}" for key, value in overrides}).reward


def parse_row(obj: Any, path: str, where: str, overlong: bool):
    """Validate one input row; returns (row, RewardInput). DataError names the line and field."""
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.data.tasks import TASKS
    from longrl.rewards.hybrid import RewardInput

    if not isinstance(obj, dict):
        raise DataError(path, where, None, f"expected a JSON object, got {type(obj).__name__}")
    if not isinstance(obj.get("id"), str | int) or isinstance(obj.get("id"), bool):
        raise DataError(path, where, "id", "missing" if obj.get("id") is None else "expected a string or an integer")
    if obj.get("context") is not None and not isinstance(obj["context"], str):
        raise DataError(path, where, "context", f"expected a string, got {type(obj['context']).__name__}")
    for name in ("task", "question", "response"):
        if name not in obj or obj[name] is None:
            raise DataError(path, where, name, "missing")
        if not isinstance(obj[name], str):
            raise DataError(path, where, name, f"expected a string, got {type(obj[name]).__name__}")
    if obj["task"] not in TASKS:
        raise DataError(path, where, "task", f"unknown task {obj['task']!r}; known: {', '.join(TASKS.names())}")
    answers = obj.get("answers")
    if isinstance(answers, str):
        answers = [answers]                       # one gold answer as a plain string
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise DataError(path, where, "answers", "expected a non-empty list of non-empty strings")
    lengths = {}
    for name in ("response_tokens", "max_response_tokens"):
        value = obj.get(name)
        if value is None:
            if overlong:
                raise DataError(path, where, name, "missing (reward.overlong.enabled needs response lengths)")
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DataError(path, where, name, "expected a non-negative integer")
        lengths[name] = value
    item = RewardInput(task=obj["task"], question=obj["question"], answers=list(answers), response=obj["response"],
                       response_tokens=lengths.get("response_tokens", 0),
                       max_response_tokens=lengths.get("max_response_tokens") if overlong else None,
                       context=obj.get("context") or "")
    return obj, item


def run_score(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.console import info, print_table, progress_bar
    from longrl.data.io import iter_jsonl, write_jsonl
    from longrl.rewards.hybrid import HybridReward
    from longrl.rewards.verifiers import GoldError

    cfg = build_reward_config(args)
    reward = HybridReward(cfg)
    rows, items, wheres = [], [], []
    for where, obj in iter_jsonl(args.input):
        if isinstance(obj, DataError):
            raise obj
        row, item = parse_row(obj, args.input, where, cfg.overlong.enabled)
        try:
            if reward.custom is None or not reward.custom.applies(item.task):   # a custom function runs once, below
                reward.rule(item)
        except GoldError as exc:
            raise DataError(args.input, where, "answers", str(exc)) from None
        rows.append(row)
        items.append(item)
        wheres.append(where)
    if not rows:
        raise DataError(args.input, "file", None, "no rows to score")
    with progress_bar(len(items), f"scoring {len(items)} responses") as advance:
        results = reward.score(items, progress=advance)
    out_rows = []
    for row, result in zip(rows, results):
        extra: dict[str, Any] = {"prediction": result.prediction, "status": result.status, "rule_score": result.rule_score,
                                 "judge_score": result.judge_score, "score": result.score, "metrics": result.metrics}
        if result.judge_error is not None:
            extra["judge_error"] = result.judge_error
        if cfg.overlong.enabled:
            extra["penalty"] = result.penalty
        out_rows.append({**row, **extra})
    write_jsonl(args.output, out_rows)
    print_summary(items, results, print_table)
    info(f"scored {len(out_rows)} rows from {args.input} into {args.output} (protocol: {cfg.protocol})")
    return 0


def print_summary(items, results, print_table) -> None:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    from longrl.rewards.hybrid import summarize

    by_task: dict[str, list] = {}
    for item, result in zip(items, results):
        by_task.setdefault(item.task, []).append(result)
    groups = sorted(by_task.items()) + ([("all", list(results))] if len(by_task) > 1 else [])
    table = []
    for task, group in groups:
        m = summarize(group)
        table.append([task, len(group), m["reward/mean"], m["reward/rule"], m["reward/judge"],
                      round(m["reward/judge_calls"] * len(group)), int(m["reward/judge_errors"]),
                      m["reward/no_answer"], m["reward/unfinished_think"]])
    print_table("scores per task (means; judged = judge calls)", ["task", "n", "score", "rule", "judge", "judged",
                                                                   "errors", "no_ans", "unfin"], table)
