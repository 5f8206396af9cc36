#!/usr/bin/env bash
# Times one ResNet-20 training step in rdprune and in python3-torch on this machine, alternating
# the two three times so that both see the same machine state, and prints the ratio of medians.
# Usage: bench/train_step.sh [build-dir]   (ratio < 1: rdprune is faster)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
bench_bin="$build/bench/bench_train_step"
threads=$(nproc)
cpp=()
py=()
for round in 1 2 3; do
  cpp+=("$("$bench_bin" --threads "$threads" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])')")
  py+=("$(/usr/bin/python3 "$here/train_step.py" --threads "$threads" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])')")
done
/usr/bin/python3 - "${cpp[*]}" "${py[*]}" "$threads" <<'PY'
import statistics, sys
cpp = [float(v) for v in sys.argv[1].split()]
py = [float(v) for v in sys.argv[2].split()]
c, p = statistics.median(cpp), statistics.median(py)
print(f"resnet20 train step, batch 128, 1x28x28, {sys.argv[3]} threads")
print(f"  rdprune        {c:8.1f} ms  (runs: {', '.join(f'{v:.1f}' for v in cpp)})")
print(f"  python3-torch  {p:8.1f} ms  (runs: {', '.join(f'{v:.1f}' for v in py)})")
print(f"  ratio rdprune / python3-torch = {c / p:.3f}")
PY
