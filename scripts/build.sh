#!/usr/bin/env bash
# Configures and builds rdprune in ./build (Release, tests and benchmarks included).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${RDPRUNE_CMAKE_ARGS:-}
cmake --build build -j "$jobs"
