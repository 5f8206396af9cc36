#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite; prints how long setup and build took.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash scripts/setup.sh
setup_done=$SECONDS
bash scripts/build.sh
echo "test.sh: setup $((setup_done - start))s, build $((SECONDS - setup_done))s"
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900
