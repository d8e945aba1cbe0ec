#!/usr/bin/env bash
# GPU suite in <= 8 minutes on any CUDA GPU: proxy `full` at fp32/fp16/bf16/int8,
# batch 1-8 (reduced step count), plus a server run. Results go to OUTDIR/cuda-<gpu>/.
#
#   benchmarks/gpu_check.sh OUTDIR            # e.g. /tmp/gpu-results or benchmarks/results
#   GEN3D_INSTANCE_TYPE=ml.g5.xlarge benchmarks/gpu_check.sh OUTDIR
#
# Without a CUDA device it exits 2 with "no CUDA device" and runs nothing.
# The proxy `full` weights (8.5 GB, random, deterministic) are written once to
# ${GEN3D_BENCH_MODEL_DIR:-~/.cache/gen3d/bench-models/proxy-full-seed0} and reused.
set -euo pipefail

if [[ $# -ne 1 || "$1" == -h || "$1" == --help ]]; then
    echo "usage: $0 OUTDIR   (runs the GPU benchmark suite, <= 8 min, results in OUTDIR)" >&2
    exit 2
fi
OUTDIR=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$HERE/.venv/bin/python}
if [[ ! -x "$PY" ]]; then
    PY=$(command -v python3)
fi
cd "$HERE"

# Fail fast and clearly when there is no GPU (this is the whole check on a CPU machine).
if ! "$PY" - <<'PYEOF'
import sys
try:
    import torch
except ImportError:
    print("gpu_check: no CUDA device: torch is not installed", file=sys.stderr)
    sys.exit(2)
if not torch.cuda.is_available():
    build = torch.version.cuda or "a CPU-only build"
    print(f"gpu_check: no CUDA device visible (torch {torch.__version__}, {build}); "
          "run this on a GPU instance such as ml.g4dn or ml.g5", file=sys.stderr)
    sys.exit(2)
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}")
PYEOF
then
    exit 2
fi

mkdir -p "$OUTDIR"
MODEL_ARGS=()
if [[ -n "${GEN3D_BENCH_MODEL_DIR:-}" ]]; then
    MODEL_ARGS=(--model-dir "$GEN3D_BENCH_MODEL_DIR")
fi
INSTANCE_ARGS=()
if [[ -n "${GEN3D_INSTANCE_TYPE:-}" ]]; then
    INSTANCE_ARGS=(--instance-type "$GEN3D_INSTANCE_TYPE")
fi
# One-time: the deterministic random weights (8.5 GB). Not part of the 8-minute suite.
if [[ ${#MODEL_ARGS[@]} -eq 0 ]]; then
    "$PY" -c "from benchmarks.backends import prepare_model_dir; \
print('gpu_check: proxy full weights in', prepare_model_dir('proxy', 'full', None))"
fi
start=$(date +%s)
# hard stop a little past the suite's own 8-minute planning, so nothing runs away
timeout --signal=TERM 540 "$PY" -m gen3d.cli.main bench all --device cuda --out "$OUTDIR" \
    "${MODEL_ARGS[@]}" "${INSTANCE_ARGS[@]}"
echo "gpu_check: done in $(( $(date +%s) - start )) s; results in $OUTDIR"
echo "gpu_check: to publish: copy $OUTDIR/cuda-* into benchmarks/results/ and run 'gen3d bench report'"
