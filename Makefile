# The two commands a person needs:
#   make serve   start the demo origin and the service under the Fastly CLI (Viceroy)
#   make test    run every test (unit, model fidelity, Viceroy end to end, a fuzzing smoke run)
# Both install what they need first (scripts/setup.sh).
# `make check` (rustfmt, clippy on the host and on wasm32-wasip1) runs in CI before them.

SERVE_ADDR ?= 127.0.0.1:7676
DEMO_ORIGIN_PORT ?= 7878
FASTLY := node_modules/@fastly/cli-linux-x64/fastly

FUZZ_SECONDS ?= 600

.PHONY: setup build serve test check model bench fuzz package

setup:
	@bash scripts/setup.sh

build: setup
	@bash scripts/build.sh

serve: build
	@bash scripts/serve.sh "$(SERVE_ADDR)" "$(DEMO_ORIGIN_PORT)"

# Every test, then a 20-second coverage-guided fuzzing run per parser (scripts/fuzz.sh).
# The unit tests of the JPEG decoder, the AVIF colour conversion, the JPEG XL row writer
# and the fused depthwise convolution run again inside Wasm under `viceroy run`: each has
# simd128 paths that only Wasm builds take.
test: build
	cargo test
	CARGO_TARGET_WASM32_WASIP1_RUNNER="viceroy run -C fastly.toml --" \
		cargo test --target wasm32-wasip1 --lib -- media::jpeg media::decode::avif \
		media::decode::jxl::tests::rows_are_written classifier::depthwise
	bash scripts/fuzz.sh 20

# A real fuzzing run: FUZZ_SECONDS per target (default 10 minutes).
fuzz: setup
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

# Formatting, and clippy with warnings as errors for both targets the code builds for.
check: setup
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target wasm32-wasip1 --bin edge-moderation --examples -- -D warnings

# The deployable package pkg/edge-moderation.tar.gz from bin/main.wasm, offline
# (`fastly compute deploy --package pkg/edge-moderation.tar.gz` uploads it).
package: build
	$(FASTLY) compute pack --wasm-binary bin/main.wasm --non-interactive
	@ls -l pkg/edge-moderation.tar.gz

# Regenerates models/ from the npm nsfwjs package (needs Python 3.11 and Node).
model:
	bash models/pipeline/run.sh

bench: build
	bash scripts/bench.sh
