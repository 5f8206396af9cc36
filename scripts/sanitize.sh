#!/usr/bin/env bash
# The sanitizer stage of CI: builds the torch-free core tests, the data readers' tests and the
# readers' fuzz targets with AddressSanitizer and UndefinedBehaviorSanitizer (-DRDPRUNE_SANITIZE=ON,
# gcc) in ./build-sanitize, and runs them with the committed fuzz regression inputs. What it covers
# and why the rest is left out: docs/robustness.md.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DRDPRUNE_SANITIZE=ON -DRDPRUNE_WERROR=ON \
  -DRDPRUNE_BUILD_BENCH=OFF >/dev/null
cmake --build build-sanitize -j "$(nproc)" --target test_core test_data fuzz_replay_readers
echo "sanitize.sh: build $((SECONDS - start))s"

# Any report ends the run with a non-zero exit.
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The core is torch-free: leaks are findings there. LibTorch keeps caches for the life of the
# process, so leak detection is off for what links it.
ASAN_OPTIONS=detect_leaks=1 build-sanitize/tests/test_core --gtest_brief=1
export ASAN_OPTIONS=detect_leaks=0
build-sanitize/tests/test_data --gtest_brief=1
build-sanitize/tests/fuzz_replay_readers check tests/fuzz/regressions
echo "sanitize.sh: done in $((SECONDS - start))s"
