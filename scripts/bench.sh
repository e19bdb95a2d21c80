#!/usr/bin/env bash
# The benchmark (`make bench`): every measurement in one run, side by side, on inputs the
# benchmark generates itself. Writes bench/results.json and bench/results.md
# (bench/results-avx2.* with BENCH_CPU=avx2).
#   RUNS=15 make bench
#   BENCH_CPU=avx2 RUNS=15 make bench   (on an AVX-512 host: measured as on an AVX2-only one)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-15}"
# Checked before anything is built, so that a run that cannot be what it says stops at once.
case "${BENCH_CPU:-}" in
  "") ;;
  avx2) grep -qw cpuid_fault /proc/cpuinfo \
          || { echo "BENCH_CPU=avx2 needs CPUID faulting (cpuid_fault)" >&2; exit 1; } ;;
  *) echo "BENCH_CPU: only 'avx2' is known" >&2; exit 1 ;;
esac
out=bench/out
mkdir -p "$out/inputs"

# The host's CPU, printed with every run: Wasm SIMD speed depends on the microarchitecture
# (AVX-512 or AVX2 only) more than anything else here.
{
  grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs
  echo ", family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo " model $(grep -m1 '^model\s*:' /proc/cpuinfo | cut -d: -f2 | xargs)"
  if [ "${BENCH_CPU:-}" = avx2 ]; then
    echo ", AVX-512 hidden from software (BENCH_CPU=avx2, CPUID faulting): AVX2 only"
  else
    grep -qw avx512f /proc/cpuinfo && echo ", AVX-512" || echo ", AVX2 only"
  fi
  echo ", $(nproc) cores"
} | tr -d '\n' > "$out/host.txt"
echo "== host: $(cat "$out/host.txt")"

echo "== building: native and wasm32 stage benchmark, baseline proxy"
# Native at its best: tract-core is built for size for the snapshot (Cargo.toml), which
# costs the native build ~6 ms of inference (its depthwise convolutions run in tract-core;
# in Wasm they run in tract-linalg's kernels), so the native side overrides that.
cargo build --release --config 'profile.release.package.tract-core.opt-level=3' \
  --example stages --example requests --example operators --example pdq --example svg_bounds
cargo build --release --target wasm32-wasip1 --example stages --example plain_proxy --example operators --example pdq \
  --example svg_bounds
target/release/examples/stages 1 "$out/inputs"
# libjpeg's own progression (refinement scans: what Pillow, cjpeg -progressive and
# mozjpeg write), which jpeg-encoder cannot: the 12 MP photo recoded by Pillow.
python3 -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).save(sys.argv[2], quality=90, progressive=True)' \
  "$out/inputs/jpeg_12mp_4032x3024.jpg" "$out/inputs/jpeg_progressive_libjpeg_12mp.jpg"
# An AVIF (Pillow's libavif), decoded and judged in a sibling instance.
python3 -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").save(sys.argv[2], quality=70)' \
  "$out/inputs/png_alpha_800x600.png" "$out/inputs/avif_800x600.avif"
# A JPEG XL (libjxl through pillow-jxl-plugin), decoded and judged in a sibling instance.
python3 -c 'import sys, pillow_jxl; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").save(sys.argv[2], format="JXL", quality=85)' \
  "$out/inputs/png_alpha_800x600.png" "$out/inputs/jxl_800x600.jxl"

# BENCH_CPU=avx2: every process from here on sees a CPU without AVX-512 (and AVX-VNNI,
# AMX): tract's native kernels and Viceroy's Cranelift choose their code as on an
# AVX2-only host (scripts/avx2_only.c says how, and what it cannot hide).
if [ "${BENCH_CPU:-}" = avx2 ]; then
  cc -O2 -shared -fPIC -o "$out/avx2_only.so" scripts/avx2_only.c
  cc -O2 -DCHECK -o "$out/avx2_only_check" scripts/avx2_only.c
  export LD_PRELOAD="$PWD/$out/avx2_only.so"
  "$out/avx2_only_check" | grep -q 'avx512f 0' || { echo "AVX-512 still visible" >&2; exit 1; }
fi

echo "== stages: native"
target/release/examples/stages "$runs" > "$out/stages-native.json"
echo "== stages: wasm32 + simd128 under viceroy run"
viceroy run -C fastly.toml target/wasm32-wasip1/release/examples/stages.wasm -- stages "$runs" \
  | grep '^{' > "$out/stages-wasm.json"

echo "== inference operator by operator: native, then wasm32 + simd128 under viceroy run"
target/release/examples/operators "$runs" > "$out/operators-native.json"
viceroy run -C fastly.toml target/wasm32-wasip1/release/examples/operators.wasm -- operators "$runs" \
  | grep '^{' > "$out/operators-wasm.json"

echo "== PDQ hashing and 100k-entry list matching: native, then wasm32 under viceroy run"
{
  target/release/examples/pdq bench "$runs"
  viceroy run -C fastly.toml target/wasm32-wasip1/release/examples/pdq.wasm -- bench "$runs" | grep '^{'
} > "$out/pdq.jsonl"

echo "== SVG drawings at each drawing bound: native, then wasm32 under viceroy run"
{
  target/release/examples/svg_bounds "$runs" | sed 's/^{/{"target":"native",/'
  viceroy run -C fastly.toml target/wasm32-wasip1/release/examples/svg_bounds.wasm -- svg_bounds "$runs" \
    | grep '^{' | sed 's/^{/{"target":"wasm32",/'
} > "$out/svg_bounds.jsonl"

echo "== whole requests through viceroy serve"
target/release/examples/requests "$runs" "$out/inputs" target/wasm32-wasip1/release/examples/plain_proxy.wasm \
  > "$out/requests.json"

echo "== load: 10,000 mixed requests at concurrency 32 through viceroy serve (tests/load.rs)"
LOAD_REQUESTS="${LOAD_REQUESTS:-10000}" LOAD_REPORT="$PWD/$out/load.json" \
  cargo test --release --test load -- --nocapture

echo "== upstream nsfwjs on tfjs-backend-wasm (Node)"
(cd bench/nsfwjs && { [ -d node_modules ] || npm install --no-audit --no-fund --loglevel=error; })
# Not under BENCH_CPU=avx2's preload: V8's own fault handler does not pass the trapped
# cpuid on, and upstream's figures are a reference, not the code measured.
env -u LD_PRELOAD node bench/nsfwjs/run.cjs "$runs" "$out/inputs" | grep '^{' > "$out/nsfwjs.json"

python3 scripts/bench_report.py "$out" "$(stat -c %s bin/main.wasm)" "$runs"
if [ "${BENCH_CPU:-}" = avx2 ]; then cat bench/results-avx2.md; else cat bench/results.md; fi
