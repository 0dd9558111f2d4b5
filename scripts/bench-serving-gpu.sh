#!/usr/bin/env bash
# Drivers per GPU of the learnt networks' serving (`vigil bench serving`), at the papers'
# sizes, under fp32 eager (the baseline), bf16 autocast with channels-last, and the same
# compiled, on a machine whose python has a CUDA build of torch. Serving needs torch, numpy,
# pydantic, pydantic-settings and opencv-python-headless; nothing is downloaded.
#
#   scripts/bench-serving-gpu.sh [OUT_DIR] [DRIVERS] [SECONDS]
#   PYTHON=/path/to/python scripts/bench-serving-gpu.sh results 16,64,128,256 20
#
# Writes OUT_DIR/<config>.json (one JSON report) and OUT_DIR/<config>.txt (the table).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=${1:-bench-serving-gpu}
drivers=${2:-16,64,128,256,512}
seconds=${3:-20}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")'
mkdir -p "$out"
run() {
  local name=$1; shift
  "$py" -m vigil bench serving --device cuda --sizes paper --drivers "$drivers" \
    --seconds "$seconds" --max-batch 64 --blink-stride 0.5 --au-stride 1 --fatigue-stride 2 \
    --json-out "$out/$name.json" "$@" | tee "$out/$name.txt"
}
run fp32-eager --precision fp32
run bf16-channels-last --precision bf16 --channels-last
run bf16-channels-last-compiled --precision bf16 --channels-last --compile
