"""Evaluation: the seven DocQA benchmarks (and held-out synthetic suites) with the published protocol.

    longrl eval --model URL_OR_PATH --benchmarks docmath,hotpotqa --data-dir DIR --out DIR

    from longrl.eval.harness import evaluate, build_reward
    summary = evaluate(backend, tokenizer, suites, cfg.eval, build_reward(cfg), out)

Modules: benchmarks (loaders, BENCHMARKS registry, synthetic suites), prompts (template and
one-pass middle truncation), protocol (the ModelBackend interface), backends (LocalBackend,
build_backend) and remote (OpenAIBackend), harness (the resumable loop), records (per-sample
JSONL), metrics (pass@k), report (summary.json, the paper-style table), fetch (optional hub
download), loopback (canned server for benchmarks and tests), bench (`longrl bench
eval-server|eval-overhead`). The command itself is `longrl.cli.eval`.
"""
