#!/usr/bin/env bash
# Curve measurement over several processes: `rdprune curves` on the same model, calibration set
# and levels, as 1 process and as 2 processes (the launcher's variables set by hand, on the
# loopback), each of 1 thread, one after the other in this run. Prints each time, the speedup
# (1 process / 2 processes; 2.0 is the physical limit on 2 cores) and checks that the two curves
# files are equal byte for byte.
# Usage: bench/dist.sh [build-dir] [calib-size] [levels] [arch]
#   defaults: ./build 256 50 resnet20; the model is freshly initialised (timing does not depend on
#   the weights).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
calib=${2:-256}
levels=${3:-50}
arch=${4:-resnet20}
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
