"""`longrl bench synth --quick` runs, checks both paths agree and reports the ratio."""

from __future__ import annotations

import json


def test_quick_synth_benchmark(tmp_path):
    from longrl.cli import main

    assert main(["bench", "synth", "--quick", "--json", str(tmp_path / "synth.json")]) == 0
    row = json.loads((tmp_path / "synth.json").read_text())["lengths"]["256"]
    assert row["baseline_tokens_per_s"] > 0 and row["longrl_tokens_per_s"] > 0 and row["speedup"] > 0
