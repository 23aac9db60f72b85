#!/usr/bin/env bash
# One-shot GPU checks for a lent machine (see BENCHMARKS.md). Writes its figures under $OUT.
# Sections: `bash bench/gpu_checks.sh [all|train|losses|eval|recipe]`; `losses` alone fits one
# 10-minute device call (about 8 minutes on the H200); `recipe` (issue "The GPU is never starved")
# is sized for one call of under 8 minutes.
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
if want recipe; then
# 5. recipe time on synthetic CIFAR-100-LT-shaped data: PIL workers vs GPU-resident tensors,
# eager and compiled, bf16 + channels_last where the recipe sets them; then the trainer for 2 real
# epochs with the GPU path
timeout 170 $PY bench/recipe.py --recipe configs/cifar100_lt_bcl.yaml --epochs 2 --compile --json "$OUT/recipe_bcl.json" 2>&1 | tee "$OUT/recipe_gpu.md"
timeout 150 $PY bench/recipe.py --recipe configs/cifar100_lt_kcl.yaml --epochs 2 --compile --json "$OUT/recipe_kcl.json" 2>&1 | tee -a "$OUT/recipe_gpu.md"
timeout 120 $PY train.py --config configs/cifar100_lt_bcl.yaml --data synthetic --train_split null --test_split null \
    --data_kwargs "{img_size: 32, n_max: 500, test_per_class: 10}" --data_pipeline tensor --epochs 2 --warmup_epochs 0 \
    --eval_every 2 --log_with none --output_dir /tmp/recipe_train 2>&1 | grep -a "^\[stage\|stage 1\|error\|done" | tee -a "$OUT/recipe_gpu.md"
$PY -c "import json; t=json.load(open('/tmp/recipe_train/train_metrics.json'))['timing']; print('trainer tensor path, 2 epochs:', round(t['images']/t['seconds']), 'views/s')" 2>&1 | tee -a "$OUT/recipe_gpu.md"
fi
if want eval; then
# 4. evaluation throughput
timeout 45 $PY bench/eval.py --device cuda --model resnet50_kcl --num-images 4096 --repeats 3 2>&1 | tee "$OUT/eval_gpu.md"
fi
} 2>&1 | tee "$OUT/gpu_log.txt"
