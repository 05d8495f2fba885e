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
  timeout 240 "$PY" -m pytest -q -p no:cacheprovider -m gpu -x tests 2>&1 | tee "$OUTDIR/gpu_tests.log" || fail "gpu tests"
else
  timeout 240 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tail -1 | tee "$OUTDIR/gpu_tests.log"
fi

# Benchmarks: each writes its own JSON; sizes as the GPU-speed issue states them (--quick on the CPU).
BENCH_ARGS=(--device "$MODE")
[ "$MODE" = cpu ] && BENCH_ARGS+=(--quick)
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
(out / "gpu_figures.json").write_text(json.dumps(figures, indent=2) + "\n")
print(f"wrote {out / 'gpu_figures.json'}")
PY
