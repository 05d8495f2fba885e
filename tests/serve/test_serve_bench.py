"""`longrl bench rollout-server` runs end to end (--quick sizes; no timing assertions)."""

from __future__ import annotations

import json

from longrl.cli import main


def test_bench_rollout_server_runs(tmp_path, capsys):
    out = tmp_path / "server.json"
    assert main(["bench", "rollout-server", "--quick", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["same_tokens"] is True                      # the server backend rolls out what the engine does
    assert result["sync_s"] > 0 and result["server_rollout_s"] > 0 and result["weights_mb"] > 0
    assert result["overhead_per_step_s"] == round(result["server_rollout_s"] - result["engine_rollout_s"] + result["sync_s"], 4)
