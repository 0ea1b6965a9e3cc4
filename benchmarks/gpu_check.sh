#!/usr/bin/env bash
# The GPU check: one prepared run of at most 8 minutes on a single CUDA GPU. Every part has its own time cap
# and runs even when an earlier part failed; the results land in OUT_DIR and are summarised in
# OUT_DIR/gpu_check.json (device, pytest results, models, kernel errors and timings, "ok").
#   1. pytest -m gpu tests/kernels, without -x: every Triton kernel against the reference (or the torch path
#      pinned to it) at real sizes, float32 and bfloat16, outputs, final states, every input gradient (210 s);
#   2. every model family's tiny presets on CUDA: a forward and one AdamW training step (120 s);
#   3. the selective scan, SSD and causal conv, forward + backward at Mamba / Mamba-2 sizes: errors of the
#      Triton path against the torch path, median timings of both and of mamba_ssm / causal_conv1d when they
#      import in this python (no network is needed or used) (105 s);
#   4. python -m benchmarks.kernels --device cuda: the side-by-side table of every op (45 s).
# pytest gets SIGINT at its cap (it still writes its junit XML); parts 2 and 3 save their JSON after every row,
# so a cap keeps what was done.
# Usage: benchmarks/gpu_check.sh [python] [out-dir]    (out-dir defaults to $OUT, else benchmarks/results/gpu_check)
# Exits 0 when everything passed, 1 when something failed, 2 without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PYTHON:-python}}
OUT_DIR=${2:-${OUT:-benchmarks/results/gpu_check}}
mkdir -p "$OUT_DIR"

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA GPU is visible to $PY; nothing was checked" >&2
  exit 2
fi
"$PY" -c "import torch, triton; print('device:', torch.cuda.get_device_name(), '| torch', torch.__version__, '| triton', triton.__version__)" | tee "$OUT_DIR/device.txt"

echo "== 1/4 correctness: pytest -m gpu tests/kernels (210 s cap)"
timeout -s INT -k 20 210 "$PY" -m pytest tests/kernels -m gpu -q -p no:cacheprovider --durations=15 \
  --junitxml="$OUT_DIR/pytest.xml" 2>&1 | tee "$OUT_DIR/pytest.log"

echo "== 2/4 models: forward + one training step per family (120 s cap)"
timeout 120 "$PY" -m benchmarks.gpu_check models --out "$OUT_DIR" 2>&1 | tee "$OUT_DIR/models.log"

echo "== 3/4 kernels: errors and timings against the torch path and the peers (105 s cap)"
timeout 105 "$PY" -m benchmarks.gpu_check kernels --out "$OUT_DIR" --repeats 10 2>&1 | tee "$OUT_DIR/kernels.log"

echo "== 4/4 table: python -m benchmarks.kernels --device cuda --repeats 3 (45 s cap)"
timeout 45 "$PY" -m benchmarks.kernels --device cuda --repeats 3 2>&1 | tee "$OUT_DIR/kernels_table.md"

"$PY" -m benchmarks.gpu_check summary --out "$OUT_DIR"
