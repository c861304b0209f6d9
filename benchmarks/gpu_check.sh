#!/usr/bin/env bash
# GPU check of the gradient engine (issue 14), one script, about 8 minutes on one GPU; installs nothing beyond
# `make install`. Writes every result into one Markdown file (default gpu_check.md) and exits 1 if a check failed.
#
#   benchmarks/gpu_check.sh                          # on a CUDA machine
#   benchmarks/gpu_check.sh --device cpu --quick     # the same sections, tiny, on the CPU (tests run this)
#   benchmarks/gpu_check.sh --out results/gpu.md
#
# Sections:
#   1. every method on the device gives the same direction as on the CPU for the same J, to 1e-5;
#   2. 50 training steps of a nyud-resnet18-shaped run on synthetic scenes at 448x576 for uniform, AvgNorm,
#      MGDA-params, Nash-MTL and FAMO: bf16 autocast through `taskbalance train --set ...`, and fp16 with a
#      GradScaler through benchmarks/amp_check.py (the trainer has no fp16 mode); none may give a NaN;
#   3. the step-time / peak-memory table (ratios to uniform, to the floor of T backward passes, to LibMTL's scheme)
#      for the package's ResNet-18 and ResNet-50 models at the paper's resolution 448x576;
#   4. a 2-process data-parallel step (benchmarks/ddp_step.py) when 2 GPUs are present.
set -u -o pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda QUICK=0 OUT=gpu_check.md
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "usage: $0 [--device cuda|cpu] [--quick] [--out FILE]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-.venv/bin/python}
TB=${TASKBALANCE:-.venv/bin/taskbalance}
[ -x "$PY" ] || PY=python
[ -x "$TB" ] || TB=taskbalance
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
REPORT="$WORK/report.md"
FAILED=0

if [ "$QUICK" = 1 ]; then
  SIZE=48x64 STEPS=3 BATCH=2 PRESET=quick TRAIN_METHODS=mgda AMP_METHODS=mgda SCALE=256
  STEP_ARGS=(--quick --no-memory --rows uniform,mgda:params) MODELS=(resnet18)
else
  SIZE=448x576 STEPS=50 BATCH=2 PRESET=nyud-resnet18 TRAIN_METHODS="uniform avgnorm mgda nashmtl famo"
  AMP_METHODS=uniform,avgnorm,mgda,nashmtl,famo SCALE=65536
  STEP_ARGS=(--size 448x576 --batch 2 --min-rounds 5 --max-rounds 10 --budget 45 --precision 0.05)
  MODELS=(nyud-resnet18 nyud-resnet50)
fi

section() { printf '\n## %s\n\n' "$1" | tee -a "$REPORT"; }
# run LIMIT_SECONDS TITLE COMMAND...: the command's output as a code block; a failure is counted and shown
run() {
  local limit="$1" title="$2"; shift 2
  printf '%s\n\n```\n$ %s\n' "$title" "$*" >> "$REPORT"
  local start=$SECONDS status=0
  timeout "$limit" "$@" 2>&1 | grep -v -E 'USDT|profiler_st|gpuGetDeviceCount|CPUAllocator|^\s*$' | tee -a "$REPORT" || status=$?
  printf '```\n%s (exit %s, %s s)\n\n' "$([ $status = 0 ] && echo passed || echo FAILED)" "$status" "$((SECONDS - start))" | tee -a "$REPORT"
  [ $status = 0 ] || FAILED=$((FAILED + 1))
}

{
  echo "# GPU check of the gradient engine"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), device \`$DEVICE\`$([ "$QUICK" = 1 ] && echo ', --quick'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  echo '```'
  "$PY" -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo '```'
} | tee "$REPORT"

section "1. Same direction on $DEVICE as on the CPU (same J, every method, 1e-5)"
run 120 "" "$PY" benchmarks/device_parity.py --device "$DEVICE"

section "2. $STEPS steps at $SIZE on synthetic scenes without NaN"
for method in $TRAIN_METHODS; do
  source_args=()
  [ "$method" = mgda ] && source_args=(--set method.source=params)
  run 150 "bf16 autocast, $method (taskbalance train)" "$TB" train "$PRESET" --no-progress --out "$WORK/run-$method" \
    --set device="$DEVICE" --set amp=true --set data.name=synthetic --set data.augment=false --set data.num_workers=0 \
    --set data.batch_size="$BATCH" --set "data.options={resolution: [${SIZE%x*}, ${SIZE#*x}], num_scenes: 2, views_per_scene: 4}" \
    --set method.name="$method" "${source_args[@]}" --set optim.iterations="$STEPS" --set optim.epochs=null \
    --set optim.eval_every="$STEPS" --set diagnostics.every=0 --set evaluation.exact_edge=false \
    --set evaluation.max_batches=1 --set log_every=10
done
run 300 "fp16 autocast with a GradScaler (benchmarks/amp_check.py)" "$PY" benchmarks/amp_check.py --preset "$PRESET" \
  --device "$DEVICE" --dtype fp16 --size "$SIZE" --steps "$STEPS" --batch "$BATCH" --methods "$AMP_METHODS" --init-scale "$SCALE"

section "3. Step time and peak extra memory (benchmarks/step_time.py)"
for model in "${MODELS[@]}"; do
  run 150 "$model" "$PY" benchmarks/step_time.py --device "$DEVICE" --model "$model" "${STEP_ARGS[@]}"
done

section "4. Two-process data-parallel step"
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "$DEVICE" = cuda ] && [ "${GPUS:-0}" -ge 2 ] && [ -f benchmarks/ddp_step.py ]; then
  run 150 "2 GPUs" "$PY" benchmarks/ddp_step.py --device cuda --world 2 --backbone resnet18 --size 448x576 --batch 4 --rounds 5
else
  echo "skipped: $GPUS GPU(s) on device \`$DEVICE\` (needs 2 GPUs and benchmarks/ddp_step.py)" | tee -a "$REPORT"
fi

printf '\n**%s check(s) failed.**\n' "$FAILED" | tee -a "$REPORT"
mkdir -p "$(dirname "$OUT")"
cp "$REPORT" "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
echo "wrote $OUT"
[ "$FAILED" = 0 ]
