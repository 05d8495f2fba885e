"""`longrl serve --model PATH [--host 127.0.0.1] [--port 8000]`: an OpenAI-compatible server on longrl's engine.

    longrl serve --model builtin:tiny-base                       # http://127.0.0.1:8000/v1
    longrl serve --model runs/demo/rl/final --port 30000 --device cuda --dtype bfloat16 --weights-root runs
    LONGRL_SERVE_KEY=... longrl serve --model M --host 0.0.0.0 --api-key-env LONGRL_SERVE_KEY
    longrl rl --config configs/smoke.yaml --out runs/x rollout.backend=server \\
        "rollout.server={base_url: http://127.0.0.1:30000/v1}"

Runs until Ctrl-C (or SIGTERM), then closes its socket and model thread. Endpoints and formats: `longrl.serve` (vLLM/SGLang-compatible completions with
token ids, chat completions, SGLang's weight reload and version endpoints). Security model: a
non-loopback --host needs --api-key-env (or --no-auth, which warns loudly); reloads load folders
under --weights-root only (none given: reloads are off); every bound is an option with a default
(`serve/limits.py`).
"""

from __future__ import annotations

import argparse

from longrl.serve.limits import ServeLimits

DEFAULTS = ServeLimits()


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value
    return parse


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API (rollouts, eval, judge)",
                       description="Serve a model with longrl's own engine: /v1/models, /v1/completions (text or "
                                   "token ids in, token ids out, n samples), /v1/chat/completions, and the weight "
                                   "reload of `rollout.backend: server` (POST /update_weights_from_disk).")
    p.add_argument("--model", required=True, metavar="PATH",
                   help="model folder (safetensors), builtin:NAME, or random (the tiny random-init model)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; any "
                                                       "other address needs --api-key-env or --no-auth)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--name", help="served model name (default: the --model value)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights and compute dtype (default float32; auto = the checkpoint's)")
    p.add_argument("--groups-per-batch", type=int, default=8, help="prompts decoded together (default 8)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    access = p.add_argument_group("access")
    access.add_argument("--api-key-env", metavar="VAR",
                        help="environment variable holding the API key; clients send `Authorization: Bearer KEY` "
                             "on every route but /health (rollout.server.api_key_env, eval/judge api_key_env)")
    access.add_argument("--no-auth", action="store_true",
                        help="serve a non-loopback --host without an API key (anyone who reaches the port may "
                             "generate and reload weights); prints a warning")
    access.add_argument("--weights-root", metavar="DIR",
                        help="reloads (POST /update_weights_from_disk) load folders inside DIR only, symlinks "
                             "resolved; default: reloads are off. For RL, a folder above rollout.server.weights_dir "
                             "(default <run>/served)")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-connections", type=_positive(int), metavar="N", default=DEFAULTS.max_connections,
                        help="open connections; past it the longest-idle one is closed, or the new one gets 503 "
                             f"(default {DEFAULTS.max_connections:,})")
    limits.add_argument("--max-queued-prompts", type=_positive(int), metavar="N", default=DEFAULTS.max_queued_prompts,
                        help=f"prompts waiting for the model; past it requests get 429 (default {DEFAULTS.max_queued_prompts:,})")
    limits.add_argument("--max-request-tokens", type=_positive(int), metavar="N", default=DEFAULTS.max_request_tokens,
                        help="work per request: sum over its prompts of n x (prompt tokens + max_tokens); past it 400 "
                             f"(default {DEFAULTS.max_request_tokens:,})")
    limits.add_argument("--header-timeout-s", type=_positive(float), metavar="S", default=DEFAULTS.header_timeout_s,
                        help=f"a request head must arrive within this (default {DEFAULTS.header_timeout_s:g})")
    limits.add_argument("--body-timeout-s", type=_positive(float), metavar="S", default=DEFAULTS.body_timeout_s,
                        help=f"a request body must arrive within this of its head (default {DEFAULTS.body_timeout_s:g})")
    limits.add_argument("--keepalive-timeout-s", type=_positive(float), metavar="S", default=DEFAULTS.keepalive_timeout_s,
                        help=f"idle kept-alive connections are closed after this (default {DEFAULTS.keepalive_timeout_s:g})")
    p.set_defaults(handler=run_serve)


def check_access(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The API key (None: none) and the resolved weights root (None: reloads off); UserError when the
    options do not allow serving (a non-loopback host without a key or --no-auth, an unset key variable)."""
    # lazy: loaded only when this command runs (`longrl --help` stays fast)
    from pathlib import Path

    from longrl.console import info
    from longrl.errors import UserError
    from longrl.http import api_key_from_env
    from longrl.serve.access import is_loopback

    key = None
    if args.api_key_env:
        key = api_key_from_env(args.api_key_env)
        if not key:
            raise UserError(f"--api-key-env {args.api_key_env}: that environment variable is not set (or empty); "
                            "set it to the key clients must send")
    if key is None and not is_loopback(args.host):
        if not args.no_auth:
            raise UserError(f"--host {args.host} serves other machines: give --api-key-env VAR (clients then send the key "
                            "as `Authorization: Bearer KEY`), or --no-auth to serve them without one")
        info(f"WARNING: longrl serve on {args.host} WITHOUT AN API KEY (--no-auth): anyone who reaches port "
             f"{args.port} can generate and reload weights. Use --api-key-env VAR, or bind 127.0.0.1.")
    root = None
    if args.weights_root:
        path = Path(args.weights_root).expanduser()
        if not path.is_dir():
            raise UserError(f"--weights-root {args.weights_root}: no such folder")
        root = str(path.resolve())
    return key, root


def run_serve(args: argparse.Namespace) -> int:
    # lazy: stage code loads only when this command runs (`longrl --help` stays fast)
    import signal
    import threading

    import torch

    from longrl.console import info
    from longrl.errors import UserError
    from longrl.serve.launch import start_server
    from longrl.serve.transport import fd_room

    if not 0 <= args.port < 65536:
        raise UserError(f"--port must be in 0..65535, got {args.port}")
    key, root = check_access(args)
    connections = fd_room(args.max_connections)
    if connections < args.max_connections:
        info(f"longrl serve: the open-file limit (ulimit -n) leaves room for {connections:,} connections, not "
             f"--max-connections {args.max_connections:,}: serving at most {connections:,}")
    limits = ServeLimits(max_connections=connections, max_queued_prompts=args.max_queued_prompts,
                         max_request_tokens=args.max_request_tokens, header_timeout_s=args.header_timeout_s,
                         body_timeout_s=args.body_timeout_s, keepalive_timeout_s=args.keepalive_timeout_s)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        server = start_server(args.model, args.host, args.port, args.name, args.device, args.dtype, args.groups_per_batch,
                              api_key=key, weights_root=root, limits=limits)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    stop = threading.Event()    # Ctrl-C (SIGINT) or SIGTERM: set by the handler, acted on here, never mid-call
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        info(f"serving {server.served.name} on {server.url} (device {server.worker.generator.device}); "
             f"{'API key required' if key else 'no API key'}; "
             f"{f'reloads from {root}' if root else 'reloads off (no --weights-root)'}; Ctrl-C stops")
        while server.running() and not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
    if stop.is_set():
        raise KeyboardInterrupt          # the command line reports "interrupted" (exit 130)
    return 0
