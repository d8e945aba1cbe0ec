#!/usr/bin/env bash
# make gpu-check: a bare, offline GPU machine -> CUDA numbers in <= 8 minutes, stopping
# itself before 9. Needs only python3 with torch (CUDA) and the packages of
# gen3d.benchmarks.gpu_runtime.PREINSTALLED, plus the wheels `make gpu-wheels` put in
# .gpu-wheels (ship that folder beside the repository: ~22 MiB).
#
#   benchmarks/gpu_check.sh [OUTDIR]                       # OUTDIR or $OUT; results in OUTDIR/cuda-<gpu>/
#   benchmarks/gpu_check.sh OUTDIR --device cpu --smoke    # the rehearsal (make gpu-rehearsal)
#   GEN3D_INSTANCE_TYPE=ml.g5.xlarge benchmarks/gpu_check.sh OUTDIR
#
# 1. install the wheels with pip --no-index --no-deps --target .gpu-site (never the network)
# 2. python -m gen3d.benchmarks.gpu_check: weights, stages, batcher, server, compile cache
# Without a CUDA device (and without --device cpu) it exits 2 and runs nothing.
set -euo pipefail
started=$(date +%s)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
WHEELS=${GEN3D_WHEELS:-$HERE/.gpu-wheels}
SITE=${GEN3D_SITE:-$HERE/.gpu-site}
HARD_STOP_S=${GEN3D_CHECK_HARD_STOP_S:-520}  # + 10 s to die: inside the command's 9 minutes
BUDGET_S=${GEN3D_CHECK_BUDGET_S:-480}        # the 8 minutes the measurements plan for

OUTDIR=${OUT:-}
DEVICE=cuda
EXTRA=()
while [[ $# -gt 0 ]]; do
    case $1 in
        -h|--help)
            sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0 ;;
        --device) DEVICE=$2; shift 2 ;;
        --smoke) EXTRA+=(--smoke); shift ;;
        -*) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) OUTDIR=$1; shift ;;
    esac
done
if [[ -z "$OUTDIR" ]]; then
    echo "usage: $0 [OUTDIR] [--device cpu] [--smoke]: give an output folder (argument or \$OUT)" >&2
    exit 2
fi
if [[ -n "${GEN3D_INSTANCE_TYPE:-}" ]]; then
    EXTRA+=(--instance-type "$GEN3D_INSTANCE_TYPE")
fi

if [[ $DEVICE == cuda ]] && ! "$PY" - <<'PYEOF'
import sys
try:
    import torch
except ImportError:
    sys.exit("gpu_check: no CUDA device: torch is not installed")
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: no CUDA device visible (torch {torch.__version__}, "
             f"{torch.version.cuda or 'a CPU-only build'}); run this on a GPU machine")
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}")
PYEOF
then
    exit 2
fi

"$PY" "$HERE/benchmarks/gpu_install.py" --wheels "$WHEELS" --target "$SITE"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
if [[ $DEVICE == cpu ]]; then
    # the CPU run proves the script, its numbers are not the point: torch on one thread,
    # since spinning OpenMP threads slow down 3-4x when other processes share the cores
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
mkdir -p "$OUTDIR"
left_hard=$(( HARD_STOP_S - ($(date +%s) - started) ))
left_budget=$(( BUDGET_S - ($(date +%s) - started) ))
cd "$HERE"
status=0
timeout --signal=TERM --kill-after=10 "$left_hard" \
    "$PY" -m gen3d.benchmarks.gpu_check --out "$OUTDIR" --device "$DEVICE" \
    --budget-s "$left_budget" "${EXTRA[@]}" || status=$?
if [[ $status -eq 124 ]]; then
    echo "gpu_check: stopped at the ${HARD_STOP_S} s hard limit; the JSON holds what finished" >&2
fi
echo "gpu_check: $(( $(date +%s) - started )) s in all (installation included); results in $OUTDIR"
echo "gpu_check: to publish: copy $OUTDIR/cuda-* into benchmarks/results/ and run 'gen3d bench report'"
exit $status
