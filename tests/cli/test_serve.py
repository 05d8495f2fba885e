"""`longrl serve` as a user starts it: a process that serves until interrupted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from longrl.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_serve_runs_until_interrupted(tiny_model_dir):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "longrl.cli", "serve", "--model", str(tiny_model_dir), "--port", "0",
                             "--name", "tiny", "--threads", "1", "--device", "cpu"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        url, seen, deadline = None, [], time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            match = re.search(r"on (http://127\.0\.0\.1:\d+/v1)", line)
            url = match.group(1) if match else None
        assert url, "".join(seen)
        assert httpx.get(url + "/models", timeout=30).json()["data"][0]["id"] == "tiny"
        reply = httpx.post(url + "/completions", json={"prompt": [5, 6, 7], "max_tokens": 3, "n": 2, "seed": 1,
                                                       "return_token_ids": True}, timeout=60).json()
        assert len(reply["choices"]) == 2 and all(1 <= len(c["token_ids"]) <= 3 for c in reply["choices"])
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 130                                   # Ctrl-C: "longrl serve: interrupted"


def test_serve_reports_a_port_it_cannot_use(tiny_model_dir, capsys):
    assert main(["serve", "--model", str(tiny_model_dir), "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err
