#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz) of everything that parses user
# bytes in upload bodies: `scripts/fuzz.sh [SECONDS] [TARGET...]`.
#   SECONDS  per target (default 20: the smoke run `make test` does); hours for a real run
#   TARGET   fuzz/fuzz_targets/*.rs (default: all)
# Seeds are in fuzz/corpus/<target>/; what a run finds new goes to fuzz/out/<target>/
# (ignored by git), so the committed corpus only changes on purpose. cargo-fuzz needs
# nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain provide them.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=($(cargo fuzz list))
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O 2>&1 | tail -1
for target in "${targets[@]}"; do
  mkdir -p "out/$target"
  echo "fuzz: $target for ${seconds}s"
  cargo fuzz run -O "$target" "out/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 2>&1 \
    | grep -E "^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|thread)|panicked|Test unit written" || true
  # cargo fuzz exits non-zero on a finding; the artifacts folder says which input.
  if compgen -G "artifacts/$target/*" > /dev/null; then
    echo "fuzz: $target found a failing input: fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
