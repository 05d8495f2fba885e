#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA device, run the `gpu` tests and the CUDA benchmarks, and write
# every figure into one JSON ($OUT/gpu_figures.json, or benchmarks/gpu_figures.json without $OUT).
#
#   bash benchmarks/gpu_wheels.sh          # once, on a machine with pip access: wheels the GPU machine lacks -> .whl/
#   bash benchmarks/gpu_check.sh           # on the GPU machine, from the repository root (<= 8 minutes)
#   bash benchmarks/gpu_check.sh --cpu     # the same steps on the CPU with tiny sizes: checks the script itself
#
# Fails fast: the first failing step stops the script with its name; figures measured so far are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=cuda
[ "${1:-}" = "--cpu" ] && MODE=cpu
OUTDIR="${OUT:-benchmarks/gpu-check}"
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false LONGRL_NO_PROGRESS=1
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ "$MODE" = cpu ] && PY=.venv/bin/python

# Packages the GPU machine's image lacks (pydantic and its needs) travel as wheels in .whl/.
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && ! "$PY" -c "import pydantic" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/longrl-site .whl/*.whl
  export PYTHONPATH="/tmp/longrl-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

step() { echo "== $1"; }
fail() { echo "gpu_check: FAILED at: $1" >&2; exit 1; }

step "environment"
"$PY" - <<'PY' > "$OUTDIR/environment.json" || fail "environment (is torch with CUDA installed? pydantic wheels in .whl/?)"
import json, platform, torch, transformers, pydantic
info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
print(json.dumps(info))
PY
cat "$OUTDIR/environment.json"
if [ "$MODE" = cuda ]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || fail "no CUDA device visible to torch"
fi

step "gpu tests (pytest -m gpu)"
if [ "$MODE" = cuda ]; then
  # includes tests/engine/test_flex.py: flex_attention's forward and backward against longrl's blocks (fp32)
  timeout 270 "$PY" -m pytest -q -p no:cacheprovider -m gpu -x tests 2>&1 | tee "$OUTDIR/gpu_tests.log" || fail "gpu tests"
else
  timeout 240 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tail -1 | tee "$OUTDIR/gpu_tests.log"
fi

BENCH_ARGS=(--device "$MODE")
[ "$MODE" = cpu ] && BENCH_ARGS+=(--quick)

step "planner vs measured peaks (longrl bench memory)"
timeout 150 "$PY" -m longrl.cli bench memory "${BENCH_ARGS[@]}" --json "$OUTDIR/bench_memory.json" \
  > "$OUTDIR/bench_memory.log" 2>&1 || { tail -20 "$OUTDIR/bench_memory.log"; fail "bench memory"; }
grep -o '"worst_relative_error": [0-9.]*' "$OUTDIR/bench_memory.json"

# One RL step under torchrun with FSDP2 on one rank: the 0.5B-shaped model (hidden 896, 24 layers; the default
# tokenizer's vocabulary), an 8K-token prompt, G=8, 256 new tokens (--cpu: a tiny shape and a short prompt).
step "RL step under torchrun (FSDP2, 1 rank)"
RL_OUT="$OUTDIR/rl_fsdp"
rm -rf "$RL_OUT"
if [ "$MODE" = cuda ]; then
  SHAPE="{hidden_size: 896, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, intermediate_size: 4864, max_position_embeddings: 16384}"
  RL_ARGS=(run.device=cuda model.dtype=bfloat16 "model.tiny=$SHAPE" "data.train=[{synth: {tasks: [docmath], n: 2, length: 8000, seed: 0}}]"
           rollout.max_input_tokens=8192 rollout.max_new_tokens=256 train.micro_batch_tokens=16384)
else
  RL_ARGS=(run.device=cpu rollout.max_input_tokens=512 rollout.max_new_tokens=16 train.micro_batch_tokens=1024)
fi
RL_ARGS+=(rollout.group_size=8 rollout.groups_per_batch=1 train.steps=1 train.prompts_per_step=1 train.mini_batches=1
          algo.track_kl=false algo.dynamic_sampling=false reward.overlong.enabled=false run.progress=none)
timeout 300 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m longrl.cli rl --config configs/smoke.yaml \
  --out "$RL_OUT" "${RL_ARGS[@]}" > "$OUTDIR/rl_fsdp.log" 2>&1 || { tail -30 "$OUTDIR/rl_fsdp.log"; fail "RL step under torchrun"; }
"$PY" -m longrl.cli plan --config configs/smoke.yaml --gpus 1 --torchrun --gpu-memory-gib 141 --json "$OUTDIR/rl_fsdp_plan.json" \
  "${RL_ARGS[@]}" > "$OUTDIR/rl_fsdp_plan.log" 2>&1 || true
tail -1 "$RL_OUT/metrics.jsonl"

# The same step with FSDP2 CPU offload of parameters and optimizer state (train.offload): its peak GPU memory
# next to the step above's. Then, where two GPUs are visible, the step at Ulysses SP 2 (train.sequence_parallel).
step "RL step with CPU offload (FSDP2 CPUOffloadPolicy, 1 rank)"
rm -rf "$OUTDIR/rl_offload"
timeout 200 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m longrl.cli rl --config configs/smoke.yaml \
  --out "$OUTDIR/rl_offload" "${RL_ARGS[@]}" train.offload.params=true train.offload.optimizer=true \
  > "$OUTDIR/rl_offload.log" 2>&1 || { tail -30 "$OUTDIR/rl_offload.log"; fail "RL step with CPU offload"; }
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$MODE" = cuda ] && [ "$GPUS" -ge 2 ]; then
  step "RL step at sequence parallel 2 (2 GPUs)"
  rm -rf "$OUTDIR/rl_sp2"
  timeout 200 "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m longrl.cli rl --config configs/smoke.yaml \
    --out "$OUTDIR/rl_sp2" "${RL_ARGS[@]}" train.sequence_parallel=2 \
    > "$OUTDIR/rl_sp2.log" 2>&1 || { tail -30 "$OUTDIR/rl_sp2.log"; fail "RL step at sequence parallel 2"; }
else
  echo "sequence parallelism on GPUs needs 2 (this machine: $GPUS); its CPU equality tests run in make test"
fi

# Benchmarks: each writes its own JSON; sizes as the GPU-speed issue states them (--quick on the CPU).
# bench forward times the shared-prompt forward+backward with each attention kernel at an 8K prompt, G=8,
# 256-token completions: flex (the CUDA default; first_call_s includes its compile), blocks and sdpa.
for name in rollout forward logprobs; do
  step "bench $name"
  extra=()
  [ "$MODE" = cuda ] && extra=(--preset 0.5b)
  timeout 150 "$PY" -m longrl.cli bench "$name" "${BENCH_ARGS[@]}" "${extra[@]}" --json "$OUTDIR/bench_$name.json" \
    > "$OUTDIR/bench_$name.log" 2>&1 || { tail -20 "$OUTDIR/bench_$name.log"; fail "bench $name"; }
done

step "collect figures"
"$PY" - "$OUTDIR" <<'PY' || fail "collect figures"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
figures = {"environment": json.loads((out / "environment.json").read_text()),
           "gpu_tests": (out / "gpu_tests.log").read_text().strip().splitlines()[-1:]}
for path in sorted(out.glob("bench_*.json")):
    figures[path.stem] = json.loads(path.read_text())
forward = figures.get("bench_forward", {})
if "shared_blocks" in forward:                     # flex (the default on CUDA) vs longrl's query blocks
    figures["flex_vs_blocks"] = {k: forward.get(k) for k in ("attention", "speedup_vs_shared_blocks",
                                 "memory_ratio_vs_shared_blocks", "max_logprob_diff_vs_shared_blocks")}
    figures["flex_vs_blocks"]["flex_first_call_s"] = forward["shared"].get("first_call_s")
for run in ("rl_offload", "rl_sp2"):
    path = out / run / "metrics.jsonl"
    if path.exists():
        row = json.loads(path.read_text().splitlines()[-1])
        figures[run + "_step"] = {k: v for k, v in row.items() if k.startswith(("time/", "memory/", "dist/"))}
metrics = out / "rl_fsdp" / "metrics.jsonl"
if metrics.exists():
    row = json.loads(metrics.read_text().splitlines()[-1])
    keep = ("time/", "memory/", "dist/", "rollout/tokens", "response_len/mean", "update/tokens")
    figures["rl_fsdp_step"] = {k: v for k, v in row.items() if k.startswith(keep)}
    plan_file = out / "rl_fsdp_plan.json"
    if plan_file.exists():
        phase = json.loads(plan_file.read_text())["phases"][0]
        figures["rl_fsdp_step"]["plan_peak_gib"] = max(phase["update_gib"], phase["rollout_gib"] or 0)
(out / "gpu_figures.json").write_text(json.dumps(figures, indent=2) + "\n")
print(f"wrote {out / 'gpu_figures.json'}")
PY
