#!/usr/bin/env bash
# Runs every fuzz target (tests/fuzz/readers.cpp, tests/fuzz/records.cpp) under libFuzzer with AddressSanitizer and
# UndefinedBehaviorSanitizer for SECONDS each (default 60). Builds with clang in ./build-fuzz; the
# corpus grows in build-fuzz/corpus/<target>, seeded from valid files and the committed regression
# inputs; a finding is written to build-fuzz/findings/ and ends the run with a non-zero exit.
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
all=(idx cifar tensors image plan curves metrics settings model)
targets=("${@:-${all[@]}}")
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a whole number, got $seconds" >&2; exit 2; }

CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRDPRUNE_FUZZ=ON \
  -DRDPRUNE_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target fuzz_replay "${targets[@]/#/fuzz_}"
rm -rf build-fuzz/seeds
build-fuzz/tests/fuzz_replay seeds build-fuzz/seeds
mkdir -p build-fuzz/findings

# LibTorch allocates caches it never frees (its allocator, its op registry): leaks are not
# findings here, only memory errors, undefined behaviour, crashes and foreign exceptions.
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
for target in "${targets[@]}"; do
  corpus=build-fuzz/corpus/$target
  regressions=tests/fuzz/regressions/$target
  mkdir -p "$corpus" "$regressions"
  echo "fuzz.sh: $target for ${seconds}s"
  if ! build-fuzz/tests/fuzz_"$target" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=30 \
      -artifact_prefix=build-fuzz/findings/"$target"- -print_final_stats=1 \
      "$corpus" build-fuzz/seeds/"$target" "$regressions" 2>build-fuzz/"$target".log; then
    failed+=("$target")
    tail -n 30 build-fuzz/"$target".log >&2
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" build-fuzz/"$target".log | tr '\n' ' '
  echo
done
if ((${#failed[@]})); then
  echo "fuzz.sh: findings in ${failed[*]} (inputs in build-fuzz/findings/)" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${seconds}s each, no finding"
