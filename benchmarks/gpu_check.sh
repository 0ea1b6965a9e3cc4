#!/usr/bin/env bash
# The GPU check of the kernels, one run of at most 8 minutes on a single CUDA GPU:
#   1. correctness: every Triton kernel against the reference (or the torch path pinned to it) at real sizes,
#      float32 and bfloat16, outputs, final states and every input gradient (the `gpu`-marked kernel tests);
#   2. timings: reference vs torch vs triton per op and shape, plus mamba_ssm / causal_conv1d kernels when they
#      import (python -m benchmarks.kernels --device cuda), printed as a markdown table.
# Any failure stops the run with a non-zero exit. Usage: benchmarks/gpu_check.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PYTHON:-python}}

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA GPU is visible to $PY; nothing was checked" >&2
  exit 1
fi
"$PY" -c "import torch, triton; print('device:', torch.cuda.get_device_name(), '| torch', torch.__version__, '| triton', triton.__version__)"

echo "== 1/2 correctness: pytest -m gpu tests/kernels"
if ! timeout 240 "$PY" -m pytest tests/kernels -m gpu -q -x -p no:cacheprovider; then
  echo "gpu_check: FAILED correctness (or ran past 240 s): the Triton kernels disagree with the reference" >&2
  exit 1
fi

echo "== 2/2 timings: python -m benchmarks.kernels --device cuda --repeats 5"
if ! timeout 230 "$PY" -m benchmarks.kernels --device cuda --repeats 5; then
  echo "gpu_check: FAILED timings (an error, or ran past 230 s)" >&2
  exit 1
fi
echo "gpu_check: passed"
