#!/usr/bin/env bash
# Installs what building, serving and testing need; cheap when everything is present.
#   - the wasm32-wasip1 Rust target
#   - Viceroy (the Compute host for local runs), pinned; built from crates.io only when
#     the installed one is missing or another version (a cold build takes 15-40 min)
#   - the Fastly CLI and Wizer, pinned in package-lock.json, from npm
#   - cargo-fuzz, pinned, for the fuzzing smoke run in `make test` (about a minute to build)
#   - Debian's chromium and playwright-core (pinned in tests/browser) for the demo page's
#     browser test; the PyPI package pdqhash (Meta's reference PDQ, pinned) for the PDQ
#     bit-identity test
set -euo pipefail
cd "$(dirname "$0")/.."
VICEROY_VERSION=0.22.0
CARGO_FUZZ_VERSION=0.13.2

rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

if ! command -v viceroy >/dev/null || [ "$(viceroy --version 2>/dev/null)" != "viceroy $VICEROY_VERSION" ]; then
  echo "Installing Viceroy $VICEROY_VERSION (a one-time build that takes a while)..."
  cargo install viceroy --version "$VICEROY_VERSION" --locked
fi

if ! command -v cargo-fuzz >/dev/null || [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

if [ ! -x node_modules/.bin/wizer ] || ! cmp -s package-lock.json node_modules/.package-lock.stamp; then
  # `npm ci` rejects this lock file (the wizer package lists platform binaries with empty
  # versions); `npm install` with exact pins in package.json gives the same tree.
  npm install --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.package-lock.stamp
fi

# Headless Chromium from Debian for tests/demo_panel.rs (Playwright cannot download a
# browser here).
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi
# playwright-core, pinned in tests/browser/package-lock.json, drives it.
if [ ! -f tests/browser/node_modules/playwright-core/package.json ] || ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.package-lock.stamp; then
  npm install --prefix tests/browser --no-audit --no-fund --loglevel=error
  cp tests/browser/package-lock.json tests/browser/node_modules/.package-lock.stamp
fi
# The test references: Meta's PDQ (C++, wrapped for Python) for tests/pdq_reference.rs,
# libjpeg-turbo (in Pillow's wheels) for tests/jpeg_reference.rs and libjxl (in
# pillow-jxl-plugin's wheels) for tests/jxl_reference.rs.
if ! python3 -c 'import pdqhash, numpy, PIL, pillow_jxl' 2>/dev/null; then
  python3 -m pip install -q -r tests/pdq_reference_requirements.txt
fi
