#!/usr/bin/env bash
# One GPU, one script: the benchmark set on CUDA plus configs/cifar10_r18_fast.yaml, then one JSON line
# with seconds, accuracy, img/s, achieved TFLOP/s and MFU (benchmarks/suite_summary.py). Budget: <= 8 min.
#   benchmarks/gpu_suite.sh               # on a CUDA machine (python from .venv, or $PYTHON)
#   benchmarks/gpu_suite.sh --cpu-smoke   # the same pipeline, CPU-sized (digits, tiny_cnn, 1 epoch): a test
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 PYTHONPATH="${PWD}/src${PYTHONPATH:+:$PYTHONPATH}"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT

if [[ "${1:-}" == "--cpu-smoke" ]]; then
  DEVICE=cpu
  RUN_SET=(--set data.kind=digits --set data.root=null --set data.augment.crop_padding=1
           --set model.name=tiny_cnn --set model.stem=imagenet --set train.epochs=1 --set train.batch_size=64
           --set train.lr=0.05 --set train.threads=1 --set train.device=cpu --set eval.batch_size=256)
  BENCH_STEP=(--models tiny_cnn --pairs 1)
  BENCH_DATA=(--images 512 --pairs 1)
  BENCH_SYNC=(--images 256 --device cpu --log-every 2)
else
  DEVICE=cuda
  "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_suite: no CUDA device (use --cpu-smoke)")'
  RUN_SET=(--set train.device=cuda)
  BENCH_STEP=(--models tiny_cnn,simple_cnn,resnet18 --device cuda --pairs 3)
  BENCH_DATA=(--images 8192 --pairs 3)
  BENCH_SYNC=(--images 16384 --batch 512 --device cuda --log-every 8)
fi

"$PY" benchmarks/step_throughput.py "${BENCH_STEP[@]}" > "$OUT/bench.jsonl"
"$PY" benchmarks/data_path.py "${BENCH_DATA[@]}" >> "$OUT/bench.jsonl"
"$PY" benchmarks/syncs_per_step.py "${BENCH_SYNC[@]}" >> "$OUT/bench.jsonl"
"$PY" -m archbench run configs/cifar10_r18_fast.yaml --set "output_dir=$OUT/results" "${RUN_SET[@]}" > "$OUT/run.log" \
  || { tail -n 30 "$OUT/run.log" >&2; exit 1; }
"$PY" benchmarks/suite_summary.py "$OUT/results/cifar10_r18_fast" "$OUT/bench.jsonl"
