"""`longrl bench rollout-server`: what one RL step pays for rolling out through a server instead of in process.

    longrl bench rollout-server [--quick] [--json FILE]

The tiny default model (builtin:tiny-base), served by `longrl serve` on loopback in this process,
the demo's rollout shape (8 prompts of ~512-token documents, G=8, 72 new tokens, temperature 1).
Measured, alternately, best of REPEATS:
  engine   SharedPrefixGenerator.generate in process (rollout.backend: engine)
  server   RemoteGenerator.generate: 8 concurrent /v1/completions requests (token ids, n=8) to the
           server, which decodes them with the same generator (rollout.backend: server)
  sync     RemoteGenerator.sync_weights: write the policy as safetensors, POST /update_weights_from_disk,
           read the version back (what the trainer does after every update); split into write and reload
The per-step overhead of the server backend is (server - engine) + sync. Both rollouts give the same
tokens (checked). Figures: benchmarks/perf.md.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from longrl.bench import BENCHMARKS
from longrl.config.model import ModelConfig
from longrl.config.rl import RolloutServerConfig
from longrl.data.prompt import encode_prompt
from longrl.data.synthetic import synthesize
from longrl.engine.generate import SamplingParams, SharedPrefixGenerator, group_seed, stop_token_ids
from longrl.engine.handover import write_served
from longrl.engine.remote import RemoteGenerator
from longrl.models.loading import load_policy, load_tokenizer
from longrl.serve.server import ModelServer
from longrl.serve.worker import ModelWorker

REPEATS = 3


def _best(times: list[float]) -> float:
    return round(min(times), 4)


@BENCHMARKS.register("rollout-server")
def bench_rollout_server(args: argparse.Namespace) -> dict:
    prompts_n, group, new, length = (2, 4, 8, 128) if args.quick else (8, 8, 72, 512)
    repeats = 1 if args.quick else REPEATS
    cfg = ModelConfig(path="builtin:tiny-base")
    tokenizer, policy = load_tokenizer(cfg), load_policy(cfg).eval()
    items = synthesize(["multihop", "docmath", "choice"], n=prompts_n, length=length, seed=100, tokenizer=tokenizer)
    prompts = [encode_prompt(tokenizer, item).ids for item in items]
    seeds = [group_seed(0, 1, i) for i in range(prompts_n)]
    params = SamplingParams(max_new_tokens=new, temperature=1.0, stop_token_ids=stop_token_ids(tokenizer, policy))
    engine = SharedPrefixGenerator(policy, tokenizer.pad_token_id, groups_per_batch=prompts_n)
    worker = ModelWorker(copy.deepcopy(policy), tokenizer, "tiny-base", cfg.path, groups_per_batch=prompts_n)
    times: dict[str, list[float]] = {"engine": [], "server": [], "sync": [], "write": []}
    with tempfile.TemporaryDirectory() as tmp, ModelServer(worker, port=0, weights_root=tmp) as server:
        remote = RemoteGenerator(RolloutServerConfig(base_url=server.url, api_key_env=None, timeout_s=300),
                                 Path(tmp) / "served")
        remote.sync_weights(policy, "warm-up")
        with torch.no_grad():
            local, served = engine.generate(prompts, group, params, seeds), remote.generate(prompts, group, params, seeds)
            same = [(g.completions, g.truncated) for g in local] == [(g.completions, g.truncated) for g in served]
            for r in range(repeats):
                start = time.perf_counter()
                engine.generate(prompts, group, params, seeds)
                times["engine"].append(time.perf_counter() - start)
                start = time.perf_counter()
                remote.generate(prompts, group, params, seeds)
                times["server"].append(time.perf_counter() - start)
                start = time.perf_counter()
                remote.sync_weights(policy, f"step-{r}")
                times["sync"].append(time.perf_counter() - start)
                start = time.perf_counter()
                write_served(policy, Path(tmp) / "write-only", remote.dtype)
                times["write"].append(time.perf_counter() - start)
        weights_mb = sum(f.stat().st_size for f in (Path(tmp) / "write-only").glob("*.safetensors")) / 1e6
    engine_s, server_s, sync_s, write_s = (_best(times[k]) for k in ("engine", "server", "sync", "write"))
    return {
        "engine_rollout_s": engine_s, "server_rollout_s": server_s, "http_overhead_s": round(server_s - engine_s, 4),
        "sync_s": sync_s, "sync_write_s": write_s, "sync_reload_s": round(sync_s - write_s, 4),
        "overhead_per_step_s": round(server_s - engine_s + sync_s, 4),
        "overhead_per_step_frac_of_engine_rollout": round((server_s - engine_s + sync_s) / engine_s, 3),
        "median": {k: round(statistics.median(v), 4) for k, v in times.items()},
        "same_tokens": same, "requests_per_rollout": prompts_n, "weights_mb": round(weights_mb, 2),
        "sizes": {"prompts": prompts_n, "group": group, "new_tokens": new, "document_tokens": length,
                  "prompt_tokens_mean": round(sum(map(len, prompts)) / len(prompts), 1),
                  "parameters": sum(p.numel() for p in policy.parameters())},
    }
