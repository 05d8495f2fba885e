"""`longrl bench sft --quick` runs and reports both steps' throughput."""

from __future__ import annotations

import json


def test_quick_sft_benchmark(tmp_path):
    from longrl.cli import main

    assert main(["bench", "sft", "--quick", "--json", str(tmp_path / "sft.json")]) == 0
    shape = json.loads((tmp_path / "sft.json").read_text())["shapes"]["h32_l1"]
    assert shape["longrl_tokens_per_s"] > 0 and shape["padded_tokens_per_s"] > 0 and shape["speedup"] > 0
    assert shape["tokens"] <= 1024
