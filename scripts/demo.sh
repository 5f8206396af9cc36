#!/usr/bin/env bash
# The main job: sets up, builds, trains the default model (ResNet-20) on Fashion-MNIST for one
# epoch, then compares rd (the paper's method with one refinement pass), select (the search from
# the plans of rd, global, LAMP and ERK, each judged after the round's fine-tuning) and every
# baseline at 80, 90 and 95% sparsity with a short fine-tune, beside the dense model put through
# the same fine-tuning, and writes the report, with what every cell cost, to out/compare
# (docs/results.md, "The main job", has the time measured after setup and build). The cells share
# one curve cache: select's pool takes rd's curves from it, charged at what they cost.
# Knobs (environment): EPOCHS (default 1), FINETUNE_STEPS (default 20), LEVELS (default 20),
# REFINE (refinement passes of rd and select, default 1), PRESET (default or paper).
# Batch-norm statistics are re-estimated after pruning. See docs/results.md, "The main job".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
mkdir -p out
epochs=${EPOCHS:-1}
steps=${FINETUNE_STEPS:-20}
model=out/resnet20-fmnist-e${epochs}.pt
if [ ! -f "$model" ]; then
  ./build/rdprune train --arch resnet20 --dataset fashion-mnist --epochs "$epochs" --out "$model"
fi
./build/rdprune compare --model "$model" --dataset fashion-mnist \
  --methods rd,select,lamp,global,uniform,uniform+,erk,dense --sparsities 0.8,0.9,0.95 \
  --finetune-steps "$steps" --levels "${LEVELS:-20}" --refine "${REFINE:-1}" --preset "${PRESET:-default}" \
  --pool rd,global,lamp,erk --judge "recovered:$steps" --judge-size 1024 \
  --bn-recalibrate --calib-size 128 --eval-limit 2000 --out-dir out/compare
echo "report: out/compare/results.md, out/compare/*.png"
