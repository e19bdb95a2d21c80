#!/usr/bin/env bash
# Builds the Compute module: release wasm32-wasip1 with SIMD, then a Wizer snapshot taken
# after the model is loaded and optimised, written to bin/main.wasm (what Viceroy, the
# Fastly CLI and the tests run).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --target wasm32-wasip1 --bin edge-moderation
mkdir -p bin target/snapshot
rm -f target/snapshot/plan
wizer() {
  node_modules/.bin/wizer --allow-wasi --wasm-bulk-memory true --wasm-simd true \
    --mapdir /snapshot::target/snapshot "$@" target/wasm32-wasip1/release/edge-moderation.wasm
}
# Two runs with the same code path (src/snapshot/): the first records which
# allocations the loaded model keeps, the second packs them into one dense arena.
EDGE_MODERATION_SNAPSHOT=record wizer --inherit-env true -o target/snapshot/recorded.wasm
wizer -o bin/main.wasm.tmp
mv bin/main.wasm.tmp bin/main.wasm
echo "bin/main.wasm: $(stat -c %s bin/main.wasm) bytes (pre-initialised)"
