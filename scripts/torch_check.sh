#!/usr/bin/env bash
# Builds rdprune against the LibTorch inside a pip-installed PyTorch (upstream 2.x, CPU or CUDA) and
# runs the test suite with that Python. On a machine with a GPU the CLI's tests run on cuda:0 (the
# default device there) and tests/python/test_cuda_device.py repeats every step on the GPU and on the
# CPU and compares them (docs/distributed.md, "Building against an upstream LibTorch").
#
#   bash scripts/torch_check.sh [BUILD_DIR]       (default build-torch)
#
# PYTHON names the Python whose torch is used (default python3). The other libraries (CLI11,
# nlohmann-json, fmt, zlib, stb, GoogleTest, Gloo's headers) come from the system or from
# CMAKE_PREFIX_PATH. RDPRUNE_CTEST_EXCLUDE: tests left out (default: the long crash test).
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(command -v "${PYTHON:-python3}")
build=${1:-build-torch}
"$python" -c 'import torch; print("torch_check: torch", torch.__version__, "CUDA", torch.version.cuda,
                                   "GPUs", torch.cuda.device_count())'
torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DRDPRUNE_BUILD_BENCH=OFF \
  -DCMAKE_PREFIX_PATH="$torch_prefix${CMAKE_PREFIX_PATH:+;$CMAKE_PREFIX_PATH}" \
  -DRDPRUNE_PYTHON="$python" ${RDPRUNE_CMAKE_ARGS:-}
# find_package(Torch) falls back to a system LibTorch where the Python's torch has no CMake files
# (Debian's python3-torch): say so rather than test another LibTorch.
torch_dir=$(sed -n 's/^Torch_DIR:[A-Z]*=//p' "$build/CMakeCache.txt")
case "$torch_dir" in
  "$torch_prefix"*) echo "torch_check: LibTorch from $torch_dir" ;;
  *) echo "torch_check: error: CMake found LibTorch at $torch_dir, not in $python's torch ($torch_prefix)" >&2
     exit 1 ;;
esac
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" -j"$(nproc)" --output-on-failure \
  -E "${RDPRUNE_CTEST_EXCLUDE:-python_crash_consistency}"
