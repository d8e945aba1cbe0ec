#!/usr/bin/env bash
# make gpu-rehearsal: benchmarks/gpu_check.sh --device cpu --smoke as the GPU machine will
# run it, so the script is proven before it ever meets a GPU (CI runs this).
#
# 1. a fresh venv that sees only torch and the target's other preinstalled packages
#    (gen3d.benchmarks.gpu_runtime.PREINSTALLED, linked from the project's .venv), nothing else;
# 2. `make gpu-wheels` for this interpreter's Python (the target's is 3.12; same names and
#    versions) - the one step that uses the network;
# 3. gpu_check.sh in a network namespace with only loopback up (unshare -n): the install
#    (pip --no-index, no pip config) and every measurement at toy sizes, offline;
# 4. the output is checked: every step measured (none skipped or failed), <= 8 files.
# The 2-minute limit is on steps 3-4 (the offline install and the check); step 2 is the
# download `make gpu-wheels` does beforehand on the real path, and is timed apart.
set -euo pipefail
started=$(date +%s)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SOURCE_PY=${SOURCE_PYTHON:-$HERE/.venv/bin/python}
BASE=${GEN3D_REHEARSAL_DIR:-$HERE/.gpu-rehearsal}
LIMIT_S=${GEN3D_REHEARSAL_LIMIT_S:-120}
CHECK_BUDGET_S=${GEN3D_REHEARSAL_CHECK_BUDGET_S:-110}  # of LIMIT_S: install + the check
cd "$HERE"

rm -rf "$BASE"
mkdir -p "$BASE"
version=$("$SOURCE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
base_python=$("$SOURCE_PY" -c 'import sys; print(sys._base_executable)')
echo "gpu-rehearsal: python $version ($base_python); the target's is 3.12"
"$base_python" -m venv "$BASE/venv"
site=$("$BASE/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$SOURCE_PY" -m gen3d.benchmarks.gpu_runtime link --dest "$BASE/preinstalled"
echo "$BASE/preinstalled" > "$site/gen3d-target-preinstalled.pth"
if "$BASE/venv/bin/python" -c 'import flask' 2>/dev/null; then
    echo "gpu-rehearsal: the fresh venv already sees flask: not a bare target" >&2
    exit 1
fi

"$SOURCE_PY" -m gen3d.benchmarks.gpu_wheels --dest "$BASE/wheels" --python-version "$version"
wheels_s=$(( $(date +%s) - started ))
offline_started=$(date +%s)

check=(env PYTHON="$BASE/venv/bin/python" GEN3D_WHEELS="$BASE/wheels" GEN3D_SITE="$BASE/site"
       GEN3D_CHECK_BUDGET_S=$CHECK_BUDGET_S PIP_CONFIG_FILE=/dev/null
       bash benchmarks/gpu_check.sh "$BASE/out" --device cpu --smoke)
if unshare -n true 2>/dev/null; then
    echo "gpu-rehearsal: offline from here on (a network namespace with only loopback)"
    unshare -n bash -c 'ip link set lo up && exec "$@"' _ "${check[@]}"
else
    # without the right to make a namespace: the install still has no index at all
    echo "gpu-rehearsal: unshare -n not permitted; offline by configuration only" >&2
    "${check[@]}"
fi

"$SOURCE_PY" - "$BASE/out" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
files = [p for p in out.rglob("*") if p.is_file()]
(doc_path,) = [p for p in files if p.name.startswith("gpucheck_")]
doc = json.loads(doc_path.read_text())
steps = ["weights", "stages", "batcher", "served", "compile"]
missing = [s for s in steps if s not in doc.get("summary", {})]
problems = [f"{s['what']}: {s['why']}" for s in doc["skipped"]]
problems += [f"{p} stages: {r['skipped']}" for p, r in doc["summary"].get("stages", {}).items()
             if "skipped" in r]
problems += [f"batch {r['batch']}: {r['skipped']}" for r in doc["summary"].get("batcher", [])
             if "skipped" in r]
levels = doc["summary"].get("served", {}).get("levels", [])
problems += [f"server {r['batching']} c={r['concurrency']}: errors {r['errors']}"
             for r in levels if sum(r["errors"].values()) or not r["throughput_per_s"]]
problems += doc["summary"].get("served", {}).get("skipped", [])
if len(levels) != 6:
    problems.append(f"server: {len(levels)} of 6 levels measured")
if len(files) > 8 or any(len(p.relative_to(out).parts) > 3 for p in files):
    problems.append(f"{len(files)} files (at most 8, two folders deep)")
if missing or problems:
    sys.exit(f"gpu-rehearsal: FAILED: missing {missing}; " + "; ".join(problems))
print(f"gpu-rehearsal: every step measured; {len(files)} files: "
      + ", ".join(sorted(p.name for p in files)))
PYEOF
offline_s=$(( $(date +%s) - offline_started ))
echo "gpu-rehearsal: install + every step offline ${offline_s} s (limit ${LIMIT_S} s);" \
     "venv + wheels download before it ${wheels_s} s; $(( $(date +%s) - started )) s in all"
if (( offline_s > LIMIT_S )); then
    echo "gpu-rehearsal: the offline install + check took over the ${LIMIT_S} s limit" >&2
    exit 1
fi
