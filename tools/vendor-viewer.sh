#!/usr/bin/env bash
# Vendor the 3D viewer of the try-it page and `gen3d view` into the package, from the npm
# registry with npm: @google/model-viewer's self-contained build (model-viewer.min.js,
# about 1.1 MB; Apache-2.0, and it bundles three.js (MIT), lit (BSD-3-Clause) and fflate
# (MIT), whose licence headers stay in the file). Pinned by version and by the tarball's
# sha512, as the registry lists it (`npm view @google/model-viewer@4.4.0 dist.integrity`).
# The result is committed (serve/ui/static/vendor/), so neither `make demo` nor `make test`
# needs npm; run this only to refresh it, then update VIEWER_VERSION / VIEWER_SHA256 in
# serve/ui/assets.py (tests/ui/test_pages.py checks the committed file against them).
# Usage: vendor-viewer.sh DEST_DIR   (`make ui-assets` calls it)
set -euo pipefail
VERSION=4.4.0
INTEGRITY=sha512-8z1SB5sPlzKoak5mdx/D31brBakPYm3Qi31EfAucHAUrtrHHCbabypkKvSwReYhUpPaxyJ46oT47uWE/hrs1Zw==
dest=${1:?usage: vendor-viewer.sh DEST_DIR}

command -v npm >/dev/null || {
  echo "vendor-viewer: npm is needed once to fetch the 3D viewer (apt-get install npm)" >&2
  exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
npm pack --silent --pack-destination "$work" "@google/model-viewer@$VERSION" >/dev/null
tarball="$work/google-model-viewer-$VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$got" != "$INTEGRITY" ]; then
  echo "vendor-viewer: $tarball has $got, expected $INTEGRITY" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work" package/dist/model-viewer.min.js package/LICENSE
mkdir -p "$dest"
cp "$work/package/LICENSE" "$dest/model-viewer.LICENSE"
cp "$work/package/dist/model-viewer.min.js" "$dest/model-viewer.min.js"
echo "vendored @google/model-viewer $VERSION into $dest"
