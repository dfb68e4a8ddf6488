#!/usr/bin/env bash
# Every GPU figure of docs/gpu.md, on a lent GPU machine (JAX with CUDA there, no Keras):
# installs the carried wheels, then runs bench/gpu.py's groups, its output into OUT/log and
# its figures into OUT/gpu.jsonl. Prepared here (docs/gpu.md):
#   ../shared/gpu/wheels.sh .gpu-carry/wheels && python bench/gpu.py pack .gpu-carry/data.npz
# There, from the project root:  bash bench/gpu_device.sh .gpu-carry "$OUT"
set -euo pipefail
carry=${1:?usage: gpu_device.sh CARRY_DIR OUT_DIR}
out=${2:?usage: gpu_device.sh CARRY_DIR OUT_DIR}
python3 -m pip install -q --no-deps --no-index "$carry"/wheels/*.whl
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt" || true
PYTHONUNBUFFERED=1 python3 bench/gpu.py all "$carry/data.npz" "$out/gpu.jsonl" 2>&1 | tee "$out/log"
