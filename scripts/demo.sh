#!/usr/bin/env bash
# The main job: sets up, builds, trains the default model (ResNet-20) on Fashion-MNIST and
# evaluates it. Output lands in ./out. EPOCHS (default 3) sets the training length.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
mkdir -p out
epochs=${EPOCHS:-3}
./build/rdprune train --arch resnet20 --dataset fashion-mnist --epochs "$epochs" --out out/resnet20-fmnist.pt
./build/rdprune info --model out/resnet20-fmnist.pt
./build/rdprune eval --model out/resnet20-fmnist.pt --dataset fashion-mnist
