#!/usr/bin/env bash
# Curve measurement: the fast path (suffix execution) against the plain loop (--plain), both run
# here one after the other on the same model, calibration set and levels, and for a TorchScript
# model rdprune against a python3-torch script doing what the reference implementation does (a
# full forward per layer and level). Prints each time and the ratios (< 1: the fast side wins).
# Both sides measure the same levels: the grid and the one-weight level (--no-tail).
# Usage: bench/curves.sh [build-dir] [calib-size] [levels] [archs] [level-batch]
#   defaults: ./build 256 100 "resnet20 vgg16" 1; models are freshly initialised (timing does not
#   depend on the weights). A level batch above 1 also times the fast path with --level-batch and
#   prints its ratio to the fast path with levels one at a time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
calib=${2:-256}
levels=${3:-100}
archs=${4:-resnet20 vgg16}
level_batch=${5:-1}
rdprune="$build/rdprune"
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seconds() { "$py" -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["seconds"])'; }
curves() {  # model, extra flags...
  local model=$1
  shift
  "$rdprune" curves --model "$model" --dataset fashion-mnist --calib-size "$calib" --levels "$levels" \
    --batch-size "$calib" --no-tail --no-cache --out "$work/c.json" --json "$@" 2>/dev/null | seconds
}
echo "curves at calibration $calib, $levels levels, $(nproc) threads"
for arch in $archs; do
  "$rdprune" train --arch "$arch" --dataset fashion-mnist --steps 1 --out "$work/$arch.pt" >/dev/null 2>&1
  plain=$(curves "$work/$arch.pt" --plain)
  fast=$(curves "$work/$arch.pt")
  "$py" -c "import sys; p, f = map(float, sys.argv[2:]); print(f'  {sys.argv[1]:<10} plain {p:8.1f} s   fast {f:8.1f} s   ratio fast / plain = {f / p:.3f}')" "$arch" "$plain" "$fast"
  if [ "$level_batch" -gt 1 ]; then
    batched=$(curves "$work/$arch.pt" --level-batch "$level_batch")
    "$py" -c "import sys; f, b = map(float, sys.argv[3:]); print(f'  {sys.argv[1]:<10} level batch {sys.argv[2]} {b:8.1f} s   ratio to levels one at a time = {b / f:.3f}')" "$arch" "$level_batch" "$fast" "$batched"
  fi
done
# TorchScript: a ResNet-20-sized CNN written in PyTorch; calibration as a tensor file.
"$py" "$here/curves_reference.py" --export "$work/net.ts.pt"
"$py" -c "
import sys, torch
sys.path.insert(0, '$here')
g = torch.Generator().manual_seed(0)
torch.save({'x': torch.randn($calib, 1, 28, 28, generator=g), 'y': torch.randint(0, 10, ($calib,), generator=g)}, '$work/calib.pt')"
stages=$("$rdprune" info --model "$work/net.ts.pt" --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["stages"])')
ts_rdprune=$("$rdprune" curves --model "$work/net.ts.pt" --dataset tensors --data-dir "$work/calib.pt" \
  --calib-size "$calib" --levels "$levels" --batch-size "$calib" --no-tail --no-cache --out "$work/ts.json" --json 2>/dev/null | seconds)
ts_python=$("$py" "$here/curves_reference.py" --model "$work/net.ts.pt" --data "$work/calib.pt" --levels "$levels" --threads "$(nproc)" | seconds)
"$py" -c "import sys; r, p = map(float, sys.argv[1:3]); print(f'  torchscript ({sys.argv[3]} stages) rdprune {r:8.1f} s   python3-torch loop {p:8.1f} s   ratio rdprune / python = {r / p:.3f}')" "$ts_rdprune" "$ts_python" "$stages"
