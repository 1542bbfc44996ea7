#!/usr/bin/env bash
# The GPU check of issue 18 in one command (hf_covid.benchmarks.cuda): on a CUDA machine it trains
# every demo model with mixed precision, checks the checkpoints on the CPU, and times ResNet-50
# (data-free loop, Trainer pipeline, torch.compile, data pipeline), writing
# benchmarks/results_cuda.json and benchmarks/results_cuda.md in about 8 minutes. Without CUDA it
# runs the same code at tiny sizes (seconds to minutes) into OUTPUT_DIR (a temporary folder unless
# set), never into benchmarks/. Nothing is downloaded: phantoms and random initial weights.
#
#   scripts/gpu_check.sh                       # CUDA: results into benchmarks/
#   OUTPUT_DIR=/tmp/check scripts/gpu_check.sh  # choose the folder (either mode)
#   PYTHON=python3 scripts/gpu_check.sh         # another interpreter than .venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
if "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    "$PYTHON" -c "import torch; print('CUDA:', torch.cuda.get_device_name(), 'torch', torch.__version__)"
    exec "$PYTHON" -m hf_covid.benchmarks.cuda --output-dir "${OUTPUT_DIR:-benchmarks}"
fi
echo "no CUDA device: running the CPU smoke path (tiny sizes; the numbers mean nothing)"
exec "$PYTHON" -m hf_covid.benchmarks.cuda --smoke --output-dir "${OUTPUT_DIR:-$(mktemp -d)}"
