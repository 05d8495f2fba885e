"""`longrl serve` as a user starts it: a process that serves until interrupted; its access options."""

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

import argparse
import socket

import httpx
import pytest

from longrl.cli import main
from longrl.cli.serve import check_access

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_runs_until_interrupted(tiny_model_dir, stop):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1",
           "LONGRL_SERVE_TEST_KEY": "k3y"}
    proc = subprocess.Popen([sys.executable, "-m", "longrl.cli", "serve", "--model", str(tiny_model_dir), "--port", "0",
                             "--name", "tiny", "--threads", "1", "--device", "cpu", "--api-key-env", "LONGRL_SERVE_TEST_KEY"],
                            stderr=subprocess.PIPE, text=True, env=env)
    idle: list[socket.socket] = []
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
        assert "API key required" in seen[-1] and "reloads off" in seen[-1]
        assert httpx.get(url + "/models", timeout=30).status_code == 401
        key = {"Authorization": "Bearer k3y"}
        assert httpx.get(url + "/models", headers=key, timeout=30).json()["data"][0]["id"] == "tiny"
        reply = httpx.post(url + "/completions", json={"prompt": [5, 6, 7], "max_tokens": 3, "n": 2, "seed": 1,
                                                       "return_token_ids": True}, headers=key, timeout=60).json()
        assert len(reply["choices"]) == 2 and all(1 <= len(c["token_ids"]) <= 3 for c in reply["choices"])
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        for _ in range(50):                              # idle half-sent requests do not hold the shutdown up
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            idle[-1].sendall(b"GET /health HTTP/1.1\r\nHost")
    finally:
        proc.send_signal(stop)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            reader.join(5)
            seen += list(lines.queue)
            raise AssertionError(f"longrl serve did not stop within 60 s of {stop.name}; its stderr:\n" + "".join(seen)) from None
        finally:
            for sock in idle:
                sock.close()
    reader.join(5)
    assert code == 130, "".join(seen)                    # "longrl serve: interrupted", the server closed first
    assert "longrl serve: interrupted" in "".join(seen + list(lines.queue))


def test_serve_reports_a_port_it_cannot_use(tiny_model_dir, capsys):
    assert main(["serve", "--model", str(tiny_model_dir), "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err


def serve_args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"host": "127.0.0.1", "port": 8000, "api_key_env": None, "no_auth": False,
                                 "weights_root": None, **kw})


@pytest.mark.parametrize("args,message", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0 serves other machines: give --api-key-env VAR"),
    (["--host", "::"], "--host :: serves other machines"),
    (["--api-key-env", "LONGRL_SURELY_UNSET_KEY"], "LONGRL_SURELY_UNSET_KEY: that environment variable is not set"),
    (["--weights-root", "/surely/not/here"], "--weights-root /surely/not/here: no such folder"),
], ids=["public host without a key", "ipv6 any", "unset key variable", "missing weights root"])
def test_serve_refuses_unsafe_or_broken_access_options_before_loading(args, message, capsys):
    assert main(["serve", "--model", "/surely/not/a/model", *args]) == 2     # refused before the model is looked at
    assert message in capsys.readouterr().err


def test_serve_limits_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--model", "/surely/not/a/model", "--max-connections", "0"])
    assert exc.value.code == 2 and "--max-connections: must be > 0" in capsys.readouterr().err


def test_a_public_host_needs_a_key_or_a_loud_no_auth(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LONGRL_TEST_SERVE_KEY", " k3y ")
    assert check_access(serve_args(host="0.0.0.0", api_key_env="LONGRL_TEST_SERVE_KEY")) == ("k3y", None)
    assert "WARNING" not in capsys.readouterr().err
    assert check_access(serve_args(host="0.0.0.0", no_auth=True, weights_root=str(tmp_path))) == (None, str(tmp_path.resolve()))
    assert "WARNING: longrl serve on 0.0.0.0 WITHOUT AN API KEY" in capsys.readouterr().err
    assert check_access(serve_args(host="localhost")) == (None, None)
