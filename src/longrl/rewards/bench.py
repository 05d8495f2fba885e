"""Reward benchmarks: `longrl bench judge`, `longrl bench verifiers` and `longrl bench adversarial`.

    longrl bench judge [--quick] [--json FILE]       # 1,000 judge calls, loopback server, 50 ms each, concurrency 32
    longrl bench verifiers [--quick] [--json FILE]   # rule-score 100,000 responses on one core
    longrl bench adversarial [--quick] [--json FILE] # the worst case: hostile responses of up to 1 MB, both protocols

`judge` starts a loopback chat/completions server in a child process (a thread per connection,
each reply after 50 ms)
and scores responses whose rule score is 0 through HybridReward, so every one costs a judge call.
It reports the wall time against the ideal (calls / concurrency x latency) and against one call at
a time (measured on a few calls), then reruns the batch from the on-disk cache. Target: < 10 s.

`verifiers` scores seeded synthetic responses (a ~1 KB thinking part, then an answer sentence;
a third each of docmath, multihop, choice; right, wrong and malformed answers mixed) with the rule
path of HybridReward, then absurd numeric answers (5,000 digits, 1e999, nan). Target: < 10 s.

`adversarial` scores each response of `adversarial_inputs()` (nested braces and parentheses,
1 MB answer lines, long digit runs, tag and emphasis floods; the kind of text a policy can emit)
for each task kind (qa, docmath, choice) under both protocols, plus the judge prompt built from
its prediction, and reports the slowest single response (CPU time, best of three). Target: < 50 ms
per response whatever the input.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from longrl.bench import BENCHMARKS
from longrl.config.reward import JudgeConfig, RewardConfig
from longrl.rewards.hybrid import HybridReward, RewardInput, summarize
from longrl.rewards.judge import build_messages
from longrl.rewards.numbers import parse_first_number, stated_scales
from longrl.rewards.text import canonical_word, strict_normalize


class _LatencyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, latency_s: float):
        super().__init__(("127.0.0.1", 0), _JudgeHandler)
        self.latency_s = latency_s
        self.lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0


class _JudgeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        server: _LatencyServer = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with server.lock:
            server.requests += 1
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        time.sleep(server.latency_s)
        with server.lock:
            server.in_flight -= 1
        verdict = "[[YES]]" if len(body) % 2 else "[[NO]]"
        reply = {"choices": [{"message": {"role": "assistant", "content": f"Same value. {verdict}"}, "finish_reason": "stop"}],
                 "usage": {"total_tokens": 120}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        server: _LatencyServer = self.server  # type: ignore[assignment]
        with server.lock:
            data = json.dumps({"requests": server.requests, "max_in_flight": server.max_in_flight}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def _serve(latency_s: float, conn) -> None:
    """Child process: run the loopback judge server, send its port through `conn`."""
    server = _LatencyServer(latency_s)
    conn.send(server.server_address[1])
    server.serve_forever()


class _ServerProcess:
    """The loopback server in its own process, so it does not share the client's interpreter lock."""

    def __init__(self, latency_s: float):
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(latency_s, child), daemon=True)
        self.process.start()
        if not parent.poll(60):
            self.process.terminate()
            raise RuntimeError("the loopback judge server did not start")
        self.url = f"http://127.0.0.1:{parent.recv()}"

    def stats(self) -> dict:
        return httpx.get(self.url + "/stats").json()

    def close(self) -> None:
        self.process.terminate()
        self.process.join(10)


def _judged_items(n: int, seed: int) -> list[RewardInput]:
    """n distinct multihop responses whose rule score is 0, so each one needs the judge."""
    rng = random.Random(seed)
    return [RewardInput(task="multihop", question=f"Which city did traveller {i} reach?", answers=[f"Vel{i}"],
                        response=f"<think>Following the chain.</think>Therefore, the answer is City{rng.randrange(10**9)}x{i}.")
            for i in range(n)]


@BENCHMARKS.register("judge")
def bench_judge(args: argparse.Namespace) -> dict:
    calls = 200 if args.quick else 1000
    concurrency, latency = 32, 0.05
    server = _ServerProcess(latency)
    try:
        with tempfile.TemporaryDirectory() as cache_dir:
            judge = JudgeConfig(base_url=server.url + "/v1", model="bench-judge", concurrency=concurrency,
                                cache_dir=cache_dir, api_key_env=None)
            reward = HybridReward(RewardConfig(judge=judge))
            items = _judged_items(calls, seed=0)
            start, cpu = time.perf_counter(), time.process_time()
            results = reward.score(items)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            metrics = summarize(results)
            stats = server.stats()
            served, peak = stats["requests"], stats["max_in_flight"]
            start = time.perf_counter()
            reward.score(items)
            cached_wall = time.perf_counter() - start
            cached_requests = server.stats()["requests"] - served
            sequential_n = 20
            serial = HybridReward(RewardConfig(judge=judge.model_copy(update={"concurrency": 1, "cache": False})))
            start = time.perf_counter()
            serial.score(_judged_items(sequential_n, seed=1))
            per_call_serial = (time.perf_counter() - start) / sequential_n
    finally:
        server.close()
    ideal = math.ceil(calls / concurrency) * latency
    return {
        "calls": calls, "concurrency": concurrency, "server_latency_s": latency,
        "judge_wall_s": round(wall, 3), "calls_per_s": round(calls / wall, 1), "ideal_s": round(ideal, 3),
        "overhead_vs_ideal": round(wall / ideal, 3),
        "client_cpu_s": round(cpu, 3), "client_cpu_ms_per_call": round(cpu / calls * 1e3, 3), "server_requests": served, "server_max_in_flight": peak,
        "judge_errors": int(metrics["reward/judge_errors"]), "judge_yes_frac": round(metrics["reward/judge"], 3),
        "one_at_a_time_s_est": round(per_call_serial * calls, 3), "speedup_vs_one_at_a_time": round(per_call_serial * calls / wall, 2),
        "rerun_from_cache_s": round(cached_wall, 3), "rerun_server_requests": cached_requests,
        "target_s": 10.0, "meets_target": wall < 10.0,
    }


def _synthetic_responses(n: int, seed: int) -> list[RewardInput]:
    rng = random.Random(seed)
    words = "the report lists revenue for each quarter and the chain of facts leads from one person to the next".split()
    items = []
    for i in range(n):
        think = " ".join(rng.choice(words) for _ in range(rng.randint(120, 220)))
        kind, fate = i % 3, rng.random()
        if kind == 0:
            gold = f"{rng.randint(1, 99999) / 100:.2f}"
            answer = gold if fate < 0.5 else f"approximately ${gold} million" if fate < 0.7 else str(rng.randint(1, 10**6))
            task = "docmath"
        elif kind == 1:
            gold = f"Person {rng.choice('ABCDEFGH')}{rng.randint(1, 999)}"
            answer = gold if fate < 0.5 else f"**{gold.lower()}**" if fate < 0.7 else "someone else entirely"
            task = "multihop"
        else:
            gold = rng.choice("ABCD")
            answer = f"({gold})" if fate < 0.5 else rng.choice(["A", "b.", "(C)", "D) the last one"])
            task = "choice"
        sentence = "the correct answer is" if task == "choice" else "Therefore, the answer is"
        if fate > 0.95:
            response = f"<think>{think}"                                   # unfinished
        elif fate > 0.9:
            response = f"<think>{think}</think>I am not sure."             # no answer phrase
        else:
            response = f"<think>{think}</think>{sentence.capitalize()} {answer}."
        items.append(RewardInput(task=task, question="q", answers=[gold], response=response))
    return items


@BENCHMARKS.register("verifiers")
def bench_verifiers(args: argparse.Namespace) -> dict:
    n = 10_000 if args.quick else 100_000
    items = _synthetic_responses(n, seed=0)
    reward = HybridReward(RewardConfig())
    start, cpu = time.perf_counter(), time.process_time()
    results = reward.score(items)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    metrics = summarize(results)
    absurd = ["9" * 5000, "1e999", "nan", "-" * 5000 + "1", "1," * 3000 + "1", "1" + "0" * 400 + " million", "inf%"] * 200
    absurd_items = [RewardInput("docmath", "q", ["42"], f"<think>x</think>The answer is {a}.") for a in absurd]
    start = time.perf_counter()
    absurd_results = reward.score(absurd_items)
    absurd_wall = time.perf_counter() - start
    return {
        "responses": n, "mean_response_chars": round(sum(len(i.response) for i in items) / n),
        "verify_wall_s": round(wall, 3), "verify_cpu_s": round(cpu, 3), "us_per_response": round(wall / n * 1e6, 1), "responses_per_s": round(n / wall),
        "reward_mean": round(metrics["reward/mean"], 4), "no_answer_frac": round(metrics["reward/no_answer"], 4),
        "unfinished_frac": round(metrics["reward/unfinished_think"], 4),
        "absurd_inputs": len(absurd_items), "absurd_wall_s": round(absurd_wall, 4),
        "absurd_max_score": max(r.score for r in absurd_results),
        "target_s": 10.0, "meets_target": wall < 10.0,
    }


MB = 1_000_000


def adversarial_inputs(size: int = MB) -> list[tuple[str, str]]:
    """(name, response) pairs a policy could produce to make scoring slow; each about `size` characters."""
    think, answer = "<think>x</think>", "<think>x</think>Therefore, the answer is "
    n = size
    return [
        ("5,000 nested \\boxed{", answer + "\\boxed{" * 5000 + "42" + "}" * 5000),
        ("nested \\boxed{ to the size", answer + "\\boxed{" * (n // 8) + "42" + "}" * (n // 8)),
        ("5,000 nested parentheses", answer + "(" * 5000 + "42" + ")" * 5000),
        ("nested parentheses to the size", answer + "(" * (n // 2) + "42" + ")" * (n // 2)),
        ("unclosed parentheses", answer + "(" * n),
        ("nested quotes and $", answer + '"$' * (n // 4) + "7" + '$"' * (n // 4)),
        ("one answer line of the size", answer + "word " * (n // 5)),
        ("thinking of the size, short answer", "<think>" + "step " * (n // 5) + "</think>Therefore, the answer is 42."),
        ("the phrase repeated", think + "the answer is " * (n // 14)),
        ("the phrase with a long gap", think + "the answer" + " " * n + "is 5"),
        ("a digit run", answer + "9" * n),
        ("digits and commas", answer + "1," * (n // 2)),
        ("a long exponent", answer + "1e" + "9" * n),
        ("Arabic-Indic digits", answer + "\u0661" * n),
        ("underscore emphasis flood", answer + "a_" * (n // 2)),
        ("asterisk flood", answer + "*" * n),
        ("think tags alternating", "</think><think>" * (n // 15) + "</think>the answer is 1"),
        ("HTML tag flood", answer + "<b>" * (n // 3)),
        ("data tag flood", answer + "</prediction   >" * (n // 16)),
        ("verdict markers", answer + "[[YES]]" * (n // 7)),
        ("spaces then a number", answer + " " * n + "5"),
        ("choice phrase flood", think + "The correct answer is " * (n // 22)),
        ("multiline answer of the size", answer + "Paris\n" * (n // 6)),
    ]


def _clear_caches() -> None:

    for cached in (parse_first_number, stated_scales, canonical_word, strict_normalize):
        cached.cache_clear()


@BENCHMARKS.register("adversarial")
def bench_adversarial(args: argparse.Namespace) -> dict:
    size = 100_000 if args.quick else MB
    cases = adversarial_inputs(size)
    golds = {"multihop": ["Paris"], "docmath": ["42"], "choice": ["B"]}
    rewards = {p: HybridReward(RewardConfig(protocol=p)) for p in ("strict", "published")}
    worst: dict[str, tuple[float, str]] = {}
    for protocol, reward in rewards.items():
        for name, response in cases:
            for task, gold in golds.items():
                item = RewardInput(task=task, question="Which one?", answers=gold, response=response)
                best = math.inf
                for _ in range(3):
                    _clear_caches()  # every repetition scores cold
                    cpu = time.process_time()
                    outcome = reward.rule(item)
                    build_messages(item.question, outcome.extraction.prediction or "", gold[0])
                    best = min(best, time.process_time() - cpu)
                key = f"{protocol}/{task}"
                if best > worst.get(key, (0.0, ""))[0]:
                    worst[key] = (best, name)
    slowest = max(worst.values())
    return {
        "cases": len(cases), "response_chars": size, "scored": len(cases) * len(golds) * len(rewards),
        "worst_ms_by_protocol_task": {k: [round(v[0] * 1e3, 2), v[1]] for k, v in sorted(worst.items())},
        "worst_ms": round(slowest[0] * 1e3, 2), "worst_case": slowest[1],
        "target_ms": 50.0, "meets_target": slowest[0] * 1e3 < 50.0,
    }
