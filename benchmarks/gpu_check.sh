#!/usr/bin/env bash
# The GPU check of issue 12, about 6 minutes on one H100/H200 (every step time-boxed; 8 minutes at most):
# CUDA parity on every fixture (fp32 to the fixtures' tolerances, bf16 to the accuracy guard), the
# full-size bf16 guard, per-stage and end-to-end frames/s for R-50 and Swin-B at 360/480 in fp32 and
# bf16, peak GPU memory, torch.compile and CUDA graphs, and fp32 vs bf16 on the host CPU.
#
#   benchmarks/gpu_check.sh                       # on a CUDA machine
#   benchmarks/gpu_check.sh --device cpu --quick  # smoke run without a GPU
#
# Figures go to $OUT (when set) or benchmarks/gpu_check_out/: gpu_check.log (everything printed)
# and gpu_check.jsonl (one JSON object per figure). Needs torch, timm, scipy, numpy, pycocotools.
#
# A package the GPU machine lacks (there: pycocotools, for its Python 3.12) travels as a wheel in
# .whl/ (ignored by git), fetched beforehand where the registry is reachable:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl pycocotools
# Wheels found there are installed into /tmp/ovformer_site before the check.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/gpu_check_out}"
mkdir -p "$out"
rm -f "$out/gpu_check.jsonl"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python="${PYTHON:-python3}"
{
  date -u
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/ovformer_site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/ovformer_site"
  fi
  "$python" -c "import pycocotools" 2>/dev/null ||
    echo "warning: pycocotools is missing: the parity, speed and e2e steps will fail; carry its wheel in .whl/ (see the top of this script)"
  command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  # every step has its own time box (480 s together on a GPU), so no overall limit here
  "$python" benchmarks/gpu_check.py --out "$out" "$@"
  status=$?
  date -u
  exit $status
} 2>&1 | tee "$out/gpu_check.log"
