#!/usr/bin/env bash
# The main job: sets up, builds, trains the default model (ResNet-20) on Fashion-MNIST, then
# compares rd with every baseline (lamp, global, uniform, uniform+, erk) at 80, 90 and 95%
# sparsity with a short fine-tune, beside the dense control (the unpruned model through the same
# fine-tuning), and writes the report (tables and plots) to out/compare.
# Knobs (environment): EPOCHS (default 2), FINETUNE_STEPS (default 20), LEVELS (default 20),
# REFINE (rd refinement passes, default 1), BLENDS (default 0), STARTS (allocators whose plans
# rd's search may start from, default global,lamp,erk). Batch-norm statistics are re-estimated
# after pruning; rd runs its defaults with one refinement pass, no blends and no uniform starts
# (they changed no figure here and cost a minute), judging every plan it considers after the same
# fine-tuning steps: see docs/results.md, "The main job".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
mkdir -p out
epochs=${EPOCHS:-2}
model=out/resnet20-fmnist-e${epochs}.pt
if [ ! -f "$model" ]; then
  ./build/rdprune train --arch resnet20 --dataset fashion-mnist --epochs "$epochs" --out "$model"
fi
./build/rdprune compare --model "$model" --dataset fashion-mnist \
  --methods rd,lamp,global,uniform,uniform+,erk,dense --sparsities 0.8,0.9,0.95 \
  --finetune-steps "${FINETUNE_STEPS:-20}" --levels "${LEVELS:-20}" --refine "${REFINE:-1}" \
  --refine-from "${STARTS:-global,lamp,erk}" --blends "${BLENDS:-0}" --bn-recalibrate --calib-size 128 --eval-limit 2000 \
  --out-dir out/compare
echo "report: out/compare/results.md, out/compare/*.png"
