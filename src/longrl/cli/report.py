"""`longrl report DIR`: write DIR/report.md with training-dynamics and accuracy-by-length plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from longrl.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("report", help="write report.md with training-dynamics and accuracy-by-length plots",
                       description="Write DIR/report.md (+ dynamics.png, accuracy_by_length.png) from a pipeline or RL run directory.")
    p.add_argument("run_dir", metavar="DIR", help="a pipeline or RL run directory (its metrics.jsonl, eval summaries)")
    p.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from longrl.report import write_report  # lazy: matplotlib

    if not Path(args.run_dir).is_dir():
        raise UserError(f"{args.run_dir}: no such run directory")
    print(write_report(args.run_dir))
    return 0
