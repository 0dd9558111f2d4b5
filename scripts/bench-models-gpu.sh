#!/usr/bin/env bash
# GPU throughput of every registered network: `vigil bench models --gpu-batches ...`, run
# model by model, on a machine whose python has a CUDA build of torch (the repository's own
# .venv holds the CPU build). The models need only torch and numpy, so nothing is installed.
#
#   scripts/bench-models-gpu.sh [OUT_DIR] [BATCHES] [MODEL...]
#   PYTHON=/path/to/python scripts/bench-models-gpu.sh results 1,8,32 satnet
#
# Writes OUT_DIR/MODEL.json (one JSON report) and OUT_DIR/MODEL.txt (the table) per network.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=${1:-bench-models-gpu}
batches=${2:-1,8,32}
shift $(( $# < 2 ? $# : 2 ))
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")'
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  mapfile -t models < <("$py" -c 'from models import list_models
for e in list_models(): print(e.name)')
fi
mkdir -p "$out"
for model in "${models[@]}"; do
  "$py" -m vigil bench models --model "$model" --gpu-batches "$batches" --repeats 3 \
    --json > "$out/$model.json"
  "$py" -c 'import json, sys
from models.bench import GpuRun, ModelBench, format_report
r = json.load(open(sys.argv[1]))
r["gpu"] = [GpuRun(**g) for g in r["gpu"]]
print("\n".join(format_report([ModelBench(**r)])))' "$out/$model.json" | tee "$out/$model.txt"
done
