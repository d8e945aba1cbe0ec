#!/usr/bin/env bash
# Install size of a SageMaker SDK package, as the README reports it (issue 18): each in a
# fresh venv under /tmp, `du -sb` of site-packages after the install minus before it.
#   alone:    on top of an empty venv
#   marginal: on top of gen3d's own run-time dependencies (pyproject's, less torch, which
#             no candidate touches), listing the versions pip changed there
# Usage: tools/sdk_install_size.sh 'sagemaker-core>=2,<3' 'sagemaker' 'sagemaker<3'
set -euo pipefail
PYTHON=${PYTHON:-python3}
BASE_DEPS=("numpy>=1.26" "scipy>=1.11" "scikit-image>=0.22" "pillow>=10" "flask>=3.0"
  "gunicorn>=22" "trimesh>=4" "safetensors>=0.4" "requests>=2.31" "boto3>=1.34")

measure() {  # venv requirement... -> bytes added; freeze before/after in $venv.{before,after}
  local venv=$1; shift
  local site
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$venv/bin/pip" list --format=freeze > "$venv.before"
  local before after
  before=$(du -sb "$site" | cut -f1)
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
  after=$(du -sb "$site" | cut -f1)
  "$venv/bin/pip" list --format=freeze > "$venv.after"
  echo $((after - before))
}

for requirement in "$@"; do
  work=$(mktemp -d /tmp/sdk-size.XXXXXX)
  "$PYTHON" -m venv "$work/alone"
  alone=$(measure "$work/alone" "$requirement")
  version=$(grep -i "^$(echo "${requirement%%[<>=]*}" | tr _ -)==" "$work/alone.after" || true)
  "$PYTHON" -m venv "$work/marginal"
  "$work/marginal/bin/pip" install --quiet --disable-pip-version-check "${BASE_DEPS[@]}"
  marginal=$(measure "$work/marginal" "$requirement")
  changed=$(comm -23 <(sort "$work/marginal.before") <(sort "$work/marginal.after") | tr '\n' ' ')
  printf '%s (%s): alone %.1f MB, on top of gen3d %.1f MB, versions changed: %s\n' \
    "$requirement" "${version:-?}" "$(echo "$alone / 1000000" | bc -l)" \
    "$(echo "$marginal / 1000000" | bc -l)" "${changed:-none}"
  rm -rf "$work"
done
