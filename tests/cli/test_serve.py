"""`longrl serve` as a user starts it: a process that serves until interrupted."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from longrl.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_runs_until_interrupted(tiny_model_dir, stop):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "longrl.cli", "serve", "--model", str(tiny_model_dir), "--port", "0",
                             "--name", "tiny", "--threads", "1", "--device", "cpu"],
                            stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()                                       # drains stderr all along: a full pipe never blocks the server
    try:
        url, deadline = None, time.monotonic() + 120
        while url is None and time.monotonic() < deadline and (proc.poll() is None or not lines.empty()):
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            match = re.search(r"on (http://127\.0\.0\.1:\d+/v1)", seen[-1])
            url = match.group(1) if match else None
        assert url, "".join(seen)
        assert httpx.get(url + "/models", timeout=30).json()["data"][0]["id"] == "tiny"
        reply = httpx.post(url + "/completions", json={"prompt": [5, 6, 7], "max_tokens": 3, "n": 2, "seed": 1,
                                                       "return_token_ids": True}, timeout=60).json()
        assert len(reply["choices"]) == 2 and all(1 <= len(c["token_ids"]) <= 3 for c in reply["choices"])
    finally:
        proc.send_signal(stop)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            reader.join(5)
            seen += list(lines.queue)
            raise AssertionError(f"longrl serve did not stop within 60 s of {stop.name}; its stderr:\n" + "".join(seen)) from None
    reader.join(5)
    assert code == 130, "".join(seen)                    # "longrl serve: interrupted", the server closed first
    assert "longrl serve: interrupted" in "".join(seen + list(lines.queue))


def test_serve_reports_a_port_it_cannot_use(tiny_model_dir, capsys):
    assert main(["serve", "--model", str(tiny_model_dir), "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err
