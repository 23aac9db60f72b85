#!/usr/bin/env bash
# One-shot GPU checks for a lent machine (see BENCHMARKS.md). Writes its figures under $OUT.
# Sections: `bash bench/gpu_checks.sh [all|train|losses|eval]`; `losses` alone fits one
# 10-minute device call (about 8 minutes on the H200).
set -u
SECTION=${1:-all}
OUT=${OUT:-outputs/gpu}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1
PY=${PY:-python3}
want() { [ "$SECTION" = all ] || [ "$SECTION" = "$1" ]; }
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, timm, accelerate, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'timm', timm.__version__, 'accelerate', accelerate.__version__)"
if want train; then
# 1. mixed-precision trainer checks (bf16 BCL, fp16 KCL + cRT) beside the digits quality table
timeout 120 $PY train.py --config configs/digits_bcl.yaml --mixed_precision bf16 --epochs 4 --output_dir /tmp/bf16 --log_with none --eval_every 4 2>&1 | grep -a "^\[stage\|error" &
timeout 120 $PY train.py --config configs/digits_kcl.yaml --mixed_precision fp16 --epochs 4 --crt_epochs 2 --output_dir /tmp/fp16 --log_with none --eval_every 2 2>&1 | grep -a "^\[stage\|error" &
timeout 200 $PY bench/digits_table.py --seeds 0 1 2 --parallel 12 --out /tmp/digits 2>&1 | grep -v "^done"
wait
cp /tmp/digits/digits_table.json /tmp/digits/digits_table.png "$OUT/"
fi
if want losses; then
# 2. losses at paper scales, compiled then eager
timeout 240 $PY bench/losses.py --device cuda --compile 2>&1 | tee "$OUT/losses_gpu_compiled.md"
timeout 150 $PY bench/losses.py --device cuda 2>&1 | tee "$OUT/losses_gpu.md"
# KCL's positive draw the other way round from the default (sort at CIFAR scale, rank at iNat
# D=128), compiled, with kernel tables
timeout 50 $PY bench/losses.py --device cuda --compile --scales cifar --losses "KCL k=6" --kcl-draw sort --profile 2>&1 | tee "$OUT/kcl_draw_gpu.md"
timeout 70 $PY bench/losses.py --device cuda --compile --scales inat_d128 --losses "KCL k=6" --kcl-draw rank --profile 2>&1 | tee -a "$OUT/kcl_draw_gpu.md"
fi
if want train; then
# 3. ResNet-50 BCL training step vs a timm-style CE step (bf16, channels_last), eager then compiled
timeout 80 $PY bench/trainer.py --gpu --steps 20 --warmup 5 2>&1 | tee "$OUT/trainer_gpu.md"
timeout 130 $PY bench/trainer.py --gpu --compile --steps 20 --warmup 5 2>&1 | tee -a "$OUT/trainer_gpu.md"
fi
if want eval; then
# 4. evaluation throughput
timeout 45 $PY bench/eval.py --device cuda --model resnet50_kcl --num-images 4096 --repeats 3 2>&1 | tee "$OUT/eval_gpu.md"
fi
} 2>&1 | tee "$OUT/gpu_log.txt"
