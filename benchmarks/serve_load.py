"""Idle connections against `longrl serve`: does it keep answering, and does it let go afterwards?

    python benchmarks/serve_load.py [--connections 2000] [--hold-s 5] [--json FILE]
    python benchmarks/serve_load.py --url http://127.0.0.1:30000 --pid 12345    # a server already running

Starts `longrl serve --model builtin:tiny-base --port 0 --threads 1` (unless --url is given), then:
  1. baseline: the server's thread count (/proc/PID/status), open files, /health latency;
  2. opens --connections sockets that each send half a request head and stop (an attacker's, or a
     client's that hung), and while they are held for --hold-s seconds asks /health every 0.1 s and
     one small /v1/completions, recording latencies, threads, open files and the server's CPU use;
  3. closes them all and polls until the thread count is back to its baseline (at most --settle-s s),
     recording how long that took and the CPU use once they left.
The server is started with --max-connections above --connections and --header-timeout-s above
--hold-s, so every idle connection really is held by the server for the whole hold (the worst case
for it); `--server-args` adds or overrides options. The client raises its own open-file limit
(RLIMIT_NOFILE) to fit the connections. Targets (issue 25): /health answered within 1 s throughout,
thread count back to baseline within 30 s. Figures: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HALF_HEAD = b"POST /v1/completions HTTP/1.1\r\nHost: load\r\nContent-Le"


def proc_threads(pid: int) -> int:
    return int(re.search(r"^Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))


def proc_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")     # utime + stime


def request(host: str, port: int, method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, float]:
    """(status, seconds) of one request on a fresh connection; status 0 when it failed or timed out."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        response = conn.getresponse()
        response.read()
        status = response.status
    except (OSError, http.client.HTTPException):
        status = 0
    finally:
        conn.close()
    return status, time.perf_counter() - start


def raise_fd_limit(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def start_server(args) -> tuple[subprocess.Popen, str, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "LONGRL_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "longrl.cli", "serve", "--model", args.model, "--port", "0", "--threads", "1",
           "--device", "cpu", "--max-connections", str(args.connections + 100),
           "--header-timeout-s", str(args.hold_s + 60), *args.server_args.split()]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 180
    for line in proc.stderr:
        match = re.search(r"on http://([\d.]+):(\d+)/v1", line)
        if match:                                     # keep draining its stderr: a full pipe would block it
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, match.group(1), int(match.group(2))
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"longrl serve did not start: {' '.join(cmd)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--hold-s", type=float, default=5.0)
    parser.add_argument("--settle-s", type=float, default=30.0)
    parser.add_argument("--model", default="builtin:tiny-base")
    parser.add_argument("--server-args", default="", help="more `longrl serve` options, e.g. '--max-connections 500'")
    parser.add_argument("--url", help="a running server's root (http://HOST:PORT); needs --pid")
    parser.add_argument("--pid", type=int, help="the running server's process id (for /proc figures)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    fd_limit = raise_fd_limit(args.connections + 256)
    if fd_limit < args.connections + 64:
        raise SystemExit(f"the open-file limit ({fd_limit}) is too low for {args.connections} connections")
    proc = None
    if args.url:
        match = re.match(r"https?://([^:/]+):(\d+)", args.url)
        host, port, pid = match.group(1), int(match.group(2)), args.pid
    else:
        proc, host, port = start_server(args)
        pid = proc.pid
    result: dict = {"connections": args.connections, "hold_s": args.hold_s}
    try:
        warm = [threading.Thread(target=request, args=(host, port, "POST", "/v1/completions",
                                                       {"prompt": [5, 6, 7], "max_tokens": 2}, 60)) for _ in range(4)]
        for thread in warm:                           # warm up: concurrent generations start the server's I/O pool
            thread.start()
        for thread in warm:
            thread.join()
        request(host, port, "GET", "/health")
        time.sleep(0.5)
        result["baseline"] = {"threads": proc_threads(pid), "open_files": proc_files(pid),
                              "health_s": round(request(host, port, "GET", "/health")[1], 4)}
        held, start = [], time.perf_counter()
        for _ in range(args.connections):
            sock = socket.create_connection((host, port), timeout=10)
            sock.sendall(HALF_HEAD)
            held.append(sock)
        opened_s = time.perf_counter() - start
        cpu0, t0 = proc_cpu_s(pid), time.monotonic()
        health, threads, files = [], [], []
        completion = request(host, port, "POST", "/v1/completions", {"prompt": [5, 6, 7], "max_tokens": 4}, timeout=30)
        while time.monotonic() - t0 < args.hold_s:
            status, seconds = request(host, port, "GET", "/health", timeout=5)
            health.append(seconds if status == 200 else float("inf"))
            threads.append(proc_threads(pid))
            files.append(proc_files(pid))
            time.sleep(0.1)
        cpu_during = (proc_cpu_s(pid) - cpu0) / (time.monotonic() - t0)
        still_open = sum(1 for s in held if _open(s))
        result["during"] = {
            "open_s": round(opened_s, 3), "health_checks": len(health), "health_max_s": round(max(health), 4),
            "health_median_s": round(sorted(health)[len(health) // 2], 4), "health_failed": sum(h == float("inf") for h in health),
            "completion_status": completion[0], "completion_s": round(completion[1], 4),
            "threads_max": max(threads), "open_files_max": max(files), "held_by_server_at_end": still_open,
            "cpu_frac": round(cpu_during, 3)}
        for sock in held:
            sock.close()
        t1, back_s = time.monotonic(), None
        while time.monotonic() - t1 < args.settle_s:
            if proc_threads(pid) <= result["baseline"]["threads"] and back_s is None:
                back_s = time.monotonic() - t1
                break
            time.sleep(0.25)
        cpu1, t2 = proc_cpu_s(pid), time.monotonic()
        time.sleep(2.0)
        result["after"] = {"threads": proc_threads(pid), "open_files": proc_files(pid),
                           "back_to_baseline_threads_s": None if back_s is None else round(back_s, 3),
                           "cpu_frac": round((proc_cpu_s(pid) - cpu1) / (time.monotonic() - t2), 3),
                           "health_s": round(request(host, port, "GET", "/health")[1], 4)}
        during = result["during"]
        result["ok"] = (during["health_failed"] == 0 and during["health_max_s"] < 1.0 and back_s is not None
                        and back_s <= 30)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if result.get("ok") else 1


def _open(sock: socket.socket) -> bool:
    """Whether the server still holds this connection (no EOF or reset waiting on it)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


if __name__ == "__main__":
    sys.exit(main())
