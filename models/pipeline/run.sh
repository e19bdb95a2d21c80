#!/usr/bin/env bash
# Regenerates models/: the int8 ONNX, the fidelity images and upstream's reference outputs.
# Everything comes from pinned registry packages (npm: package-lock.json, PyPI: requirements.txt).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
models="$(dirname "$here")"
cd "$here"

if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/requirements.txt; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  cp requirements.txt .venv/requirements.txt
fi
npm ci --no-audit --no-fund --loglevel=error

export TF_CPP_MIN_LOG_LEVEL=3 PYTHONHASHSEED=0
node extract_upstream.cjs
.venv/bin/python build_onnx.py "$models/nsfw_mobilenet_v2_int8.onnx"
.venv/bin/python make_fidelity_images.py "$models/fidelity/images"
node upstream_reference.cjs "$models/fidelity/images" "$models/fidelity/reference.json" > /dev/null
sha256sum "$models/nsfw_mobilenet_v2_int8.onnx"
