#!/usr/bin/env bash
# Several processes against one, each of 1 thread, one after the other in this run, the launcher's
# variables set by hand on the loopback:
#  - curve measurement: `rdprune curves` on the same model, calibration set and levels; checks that
#    the two curves files are equal byte for byte;
#  - fine-tuning: `rdprune finetune` for the same steps on the same global batches; the time is the
#    training loop's alone (train_seconds), the pair is repeated and the median ratio printed, with
#    the two models' test loss (they differ where the model has batch norm: each process
#    normalises by its own part of the batch).
# Prints each time and the speedup (1 process / 2 processes; 2.0 is the physical limit on 2 cores).
# Usage: bench/dist.sh [build-dir] [calib-size] [levels] [arch] [steps] [repeats]
#   defaults: ./build 256 50 resnet20 40 3; the model is trained for one step (timing does not depend
#   on the weights).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
calib=${2:-256}
levels=${3:-50}
arch=${4:-resnet20}
steps=${5:-40}
repeats=${6:-3}
rdprune="$build/rdprune"
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
curves() {  # out, then the environment of one process
  local out=$1
  shift
  env "$@" "$rdprune" curves --model "$work/$arch.pt" --dataset fashion-mnist --calib-size "$calib" \
    --levels "$levels" --threads 1 --no-cache --out "$out" 2>/dev/null
}
"$rdprune" train --arch "$arch" --dataset fashion-mnist --steps 1 --out "$work/$arch.pt" >/dev/null 2>&1
start=$(date +%s.%N)
curves "$work/one.json" >/dev/null
one=$("$py" -c "import sys, time; print(time.time() - float(sys.argv[1]))" "$start")
start=$(date +%s.%N)
common=(WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT="$port")
curves "$work/two.json" RANK=0 "${common[@]}" >/dev/null &
curves "$work/two.json" RANK=1 "${common[@]}" >/dev/null
wait
two=$("$py" -c "import sys, time; print(time.time() - float(sys.argv[1]))" "$start")
cmp -s "$work/one.json" "$work/two.json" && same="equal byte for byte" || same="DIFFERENT"
"$py" -c "import sys; a, b = map(float, sys.argv[2:4]); print(f'curves of {sys.argv[1]}, calibration $calib, $levels levels, 1 thread per process: 1 process {a:.1f} s, 2 processes {b:.1f} s, speedup {a / b:.2f}x; files {sys.argv[4]}')" "$arch" "$one" "$two" "$same"

finetune() {  # out, then the environment of one process
  local out=$1
  shift
  env "$@" "$rdprune" finetune --model "$work/$arch.pt" --dataset fashion-mnist --steps "$steps" \
    --batch-size 128 --threads 1 --eval-limit 1000 --json --out "$out" 2>/dev/null
}
# This machine's speed drifts from minute to minute: the pair is run `repeats` times, one process
# then two each time, and the median of the pairs' ratios is the figure.
for ((r = 1; r <= repeats; r++)); do
  finetune "$work/tuned-1.pt" >"$work/one-$r.out"
  port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  common=(WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT="$port")
  finetune "$work/tuned-2.pt" RANK=0 "${common[@]}" >"$work/two-$r.out" &
  finetune "$work/tuned-2.pt" RANK=1 "${common[@]}" >/dev/null
  wait
done
"$py" - "$arch" "$steps" "$work" "$repeats" <<'PY'
import json, statistics, sys
arch, steps, work, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
pairs = []
for r in range(1, repeats + 1):
    one, two = (json.load(open(f"{work}/{name}-{r}.out")) for name in ("one", "two"))
    pairs.append((one["train_seconds"], two["train_seconds"], one["loss"], two["loss"]))
for a, b, _, _ in pairs:
    print(f"  pair: 1 process {a:.1f} s, 2 processes {b:.1f} s, ratio {a / b:.2f}")
a, b, loss_one, loss_two = pairs[0]
print(f"fine-tuning {arch}, {steps} steps of batch 128, 1 thread per process, {repeats} pairs: "
      f"median speedup {statistics.median(x / y for x, y, _, _ in pairs):.2f}x; "
      f"test loss {loss_one:.6f} (1 process) and {loss_two:.6f} (2 processes)")
PY
