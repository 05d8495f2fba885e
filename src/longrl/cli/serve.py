"""`longrl serve --model PATH [--host 127.0.0.1] [--port 8000]`: an OpenAI-compatible server on longrl's engine.

    longrl serve --model builtin:tiny-base                       # http://127.0.0.1:8000/v1
    longrl serve --model runs/demo/rl/final --port 30000 --device cuda --dtype bfloat16
    longrl rl --config configs/smoke.yaml --out runs/x rollout.backend=server \\
        "rollout.server={base_url: http://127.0.0.1:30000/v1}"

Runs until Ctrl-C (or SIGTERM), then closes its socket and model thread. Endpoints and formats: `longrl.serve` (vLLM/SGLang-compatible completions with
token ids, chat completions, SGLang's weight reload and version endpoints).
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API (rollouts, eval, judge)",
                       description="Serve a model with longrl's own engine: /v1/models, /v1/completions (text or "
                                   "token ids in, token ids out, n samples), /v1/chat/completions, and the weight "
                                   "reload of `rollout.backend: server` (POST /update_weights_from_disk).")
    p.add_argument("--model", required=True, metavar="PATH",
                   help="model folder (safetensors), builtin:NAME, or random (the tiny random-init model)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--name", help="served model name (default: the --model value)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights and compute dtype (default float32; auto = the checkpoint's)")
    p.add_argument("--groups-per-batch", type=int, default=8, help="prompts decoded together (default 8)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    import signal
    import threading

    import torch

    from longrl.console import info
    from longrl.errors import UserError
    from longrl.serve.launch import start_server

    if args.threads:
        torch.set_num_threads(args.threads)
    if not 0 <= args.port < 65536:
        raise UserError(f"--port must be in 0..65535, got {args.port}")
    try:
        server = start_server(args.model, args.host, args.port, args.name, args.device, args.dtype, args.groups_per_batch)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    stop = threading.Event()    # Ctrl-C (SIGINT) or SIGTERM: set by the handler, acted on here, never mid-call
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        info(f"serving {server.served.name} on {server.url} (device {server.worker.generator.device}); "
             "Ctrl-C stops")
        while server.running() and not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
    if stop.is_set():
        raise KeyboardInterrupt          # the command line reports "interrupted" (exit 130)
    return 0
