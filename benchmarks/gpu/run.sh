#!/usr/bin/env bash
# Every GPU check of the project, in one run of under 8 minutes on one H100 (the device sessions'
# budget is 15 minutes in all). Run from the repository root on the GPU machine:
#     bash benchmarks/gpu/run.sh            # output to stdout and to $OUT/gpu_checks.txt if set
# Checks, in order (each prints its own figures; a failing one does not stop the others):
#   1. the training engine on CUDA (NCCL, one rank): tiny pretraining, then DPO from its model
#   2. an 8B-shaped bf16 train step, llamaops against transformers: tokens/s ratio and MFU
#   3. decode tokens/s of the serving engine in bf16 and FP8 against transformers' static-cache
#      generate, at batch 1 and 32
set -u
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
LOG=${OUT:+$OUT/gpu_checks.txt}
LOG=${LOG:-/dev/null}
status=0
run() {
    echo "== $*" | tee -a "$LOG"
    timeout 240 "$@" 2>&1 | grep -v -i warning | tee -a "$LOG"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "== FAILED: $*" | tee -a "$LOG"; status=1; }
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
run "$PYTHON" benchmarks/gpu_stages.py --device cuda
run "$PYTHON" benchmarks/gpu_train_step.py --layers 8 --steps 10
run "$PYTHON" benchmarks/gpu_decode.py --layers 4 --batches 1,32
exit $status
