#!/usr/bin/env bash
# Latency of pruned models against the dense one, side by side in one run (bench/speed.py): a
# model scripted in python3-torch (random weights: timing does not depend on them; `cnn`, a
# VGG-style network defined here, or a torchvision architecture where python3-torchvision is),
# pruned by rdprune to each FLOPs sparsity (global magnitude ranking under a FLOPs budget; weight
# granularity, the deployment copy from `prune --export-dense`), each timed at batch 1 and 64 with
# 1 and 2 threads. The table gives each model's kept share of multiply-accumulates beside its
# measured speedup.
# Usage: bench/speed.sh [build-dir] [arch] [sparsities] [shape]
#   defaults: ./build cnn 0.5,0.9 3,64,64
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
arch=${2:-cnn}
sparsities=${3:-0.5,0.9}
shape=${4:-3,64,64}
rdprune="$build/rdprune"
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" - "$arch" "$work/dense.pt" <<'PY'
import sys, torch, torch.nn as nn
torch.manual_seed(0)
if sys.argv[1] == "cnn":  # VGG-style: four conv blocks of 64, 128, 256, 256 channels, then a linear head
    layers, width = [], 3
    for out in (64, 128, 256, 256):
        layers += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
        width = out
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))
else:  # a torchvision architecture, where python3-torchvision is installed
    import torchvision
    model = getattr(torchvision.models, sys.argv[1])(num_classes=10)
torch.jit.script(model.eval()).save(sys.argv[2])
PY
data=(--dataset synthetic --input-shape "$shape" --num-classes 10)
models=("dense=$work/dense.pt:1")
for s in ${sparsities//,/ }; do
  kept=$("$rdprune" allocate --method global --model "$work/dense.pt" "${data[@]}" --budget flops \
    --sparsity "$s" --json --out "$work/plan-$s.json" 2>/dev/null |
    "$py" -c 'import json, sys; print(1 - json.load(sys.stdin)["flops_sparsity_achieved"])')
  "$rdprune" prune --model "$work/dense.pt" --plan "$work/plan-$s.json" "${data[@]}" \
    --out "$work/masked-$s.pt" --export-dense "$work/pruned-$s.pt" >/dev/null 2>&1
  models+=("weights-$s=$work/pruned-$s.pt:$kept")
done
echo "$arch, input $shape, weight granularity (zeros in dense tensors), TorchScript in python3-torch"
"$py" "$here/speed.py" --shape "$shape" "${models[@]}"
