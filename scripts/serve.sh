#!/usr/bin/env bash
# Starts the demo origin (demo/site on loopback) and the pre-initialised service under the
# Fastly CLI, which runs Viceroy. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
addr="$1"
origin_port="$2"

python3 demo/origin.py "$origin_port" &
origin_pid=$!
trap 'kill $origin_pid 2>/dev/null || true' EXIT INT TERM

echo "Demo page: http://$addr/  (origin: http://127.0.0.1:$origin_port/)"
# The Go binary directly (not the npx wrapper), Viceroy from PATH, no update check needed.
FASTLY_VICEROY_USE_PATH=1 node_modules/@fastly/cli-linux-x64/fastly compute serve \
  --skip-build --file bin/main.wasm --addr "$addr" --viceroy-path "$(command -v viceroy)"
