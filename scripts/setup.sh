#!/usr/bin/env bash
# Installs what building, serving and testing need; cheap when everything is present.
#   - the wasm32-wasip1 Rust target
#   - Viceroy (the Compute host for local runs), pinned; built from crates.io only when
#     the installed one is missing or another version (a cold build takes 15-40 min)
#   - the Fastly CLI and Wizer, pinned in package-lock.json, from npm
#   - cargo-fuzz, pinned, for the fuzzing smoke run in `make test` (about a minute to build)
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
