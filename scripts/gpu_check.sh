#!/usr/bin/env bash
# GPU readiness check for isvos-lite, on one CUDA GPU, in a few minutes:
#   1. the CUDA / AMP unit tests (tests/test_cuda.py: GPU against CPU, bf16 and fp16 autocast, fp16 + GradScaler
#      training steps) and a few fast unit-test files, on the GPU machine;
#   2. the `paper` preset trained for GPU_CHECK_ITERS iterations with AMP on a generated teaching world
#      (loss falls, no NaN, it/s and peak GPU memory from metrics.jsonl);
#   3. a 1-GPU `torchrun` DDP job (NCCL process group of one + DistributedDataParallel);
#   4. timed inference of `paper` and `lite` at 480x854, with and without AMP (fps, peak memory).
#
# Usage (from the repository root):   bash scripts/gpu_check.sh [OUT_DIR]
#   OUT_DIR defaults to $OUT (the device tool's output folder) or outputs/gpu_check. Everything is logged to
#   OUT_DIR/gpu_check.log and summarised in OUT_DIR/gpu_check.json; the exit code is the number of failed checks.
# Knobs: PYTHON (default: .venv/bin/python if it sees CUDA, else python3), GPU_CHECK_ITERS (default 200),
#   GPU_CHECK_BATCH (VOS clips per iteration, default 4), GPU_CHECK_WORLD (default data/gpu_check_world).
# Needs: PyTorch with CUDA, numpy, scipy, pillow, opencv, safetensors, tqdm, matplotlib, pytest. No downloads,
#   no pretrained weights (the paper preset is trained with trainable BatchNorm: --backbone-norm bn).
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-outputs/gpu_check}}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
RUNS="${GPU_CHECK_RUNS:-/tmp/isvos_gpu_check_runs}"
WORLD="${GPU_CHECK_WORLD:-data/gpu_check_world}"
ITERS="${GPU_CHECK_ITERS:-200}"
BATCH="${GPU_CHECK_BATCH:-4}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg ISVOS_LITE_SMALL=1
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    PYTHON=.venv/bin/python
  fi
fi
FAILED=0
rm -rf "$RUNS"; mkdir -p "$RUNS"
exec > >(tee -a "$LOG") 2>&1

step() { echo; echo "=== $1 ($(date +%T))"; }
check() {  # check NAME COMMAND...: run, record PASS/FAIL
  local name=$1; shift
  local start=$SECONDS
  if "$@"; then echo "PASS $name ($((SECONDS - start)) s)"; echo "$name PASS $((SECONDS - start))" >> "$RUNS/results.txt"
  else echo "FAIL $name ($((SECONDS - start)) s)"; echo "$name FAIL $((SECONDS - start))" >> "$RUNS/results.txt"; FAILED=$((FAILED + 1)); fi
}

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
$PYTHON - <<'EOF' || { echo "FAIL: PyTorch with CUDA is needed (set PYTHON=...)"; exit 99; }
import sys, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}")
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print(f"device {torch.cuda.get_device_name()}, bf16 {torch.cuda.is_bf16_supported()}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
EOF

step "1. unit tests on cuda"
check unit_tests_cuda $PYTHON -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_deform_attn.py \
    tests/test_memory.py tests/test_inference_views.py tests/test_eke_injection.py tests/test_optimizer.py

step "teaching world for the training checks ($WORLD)"
$PYTHON - "$WORLD" <<'EOF'
import sys, time
from pathlib import Path
from isvos_lite.data.export import WorldSizes, generate_world
root = Path(sys.argv[1])
if (root / "ImageSets" / "2017" / "val.txt").exists():
    print(f"{root} exists"); sys.exit(0)
start = time.time()
generate_world(root, seed=0, sizes=WorldSizes(train=24, val=4, lookalike=0, heldout=0, youtube_train=0,
               youtube_valid=0, coco_train=200, coco_val=20), youtube=False, progress=False)
print(f"generated {root} in {time.time() - start:.0f} s")
EOF

step "2. paper preset, $ITERS iterations, AMP, batch $BATCH"
train_paper() {
  local tb=""
  $PYTHON -c "import tensorboard" 2>/dev/null && tb="--tensorboard"     # the optional extra, when installed
  $PYTHON -m isvos_lite.cli train --preset paper --data "$WORLD" --out "$RUNS/paper" --stage main \
      --main-iters "$ITERS" --batch-size "$BATCH" --backbone-norm bn --device cuda --val-every 0 --log-every 10 \
      --checkpoint-every 100000 --workers 6 --quiet $tb > "$RUNS/paper_train.log" 2>&1
  local status=$?
  tail -n 5 "$RUNS/paper_train.log"
  [ "$status" -eq 0 ] || return 1
  $PYTHON - "$RUNS/paper/metrics.jsonl" "$OUT_DIR/paper_training.json" <<'EOF'
import json, math, sys
records = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
losses = [r["loss"] for r in records]
k = max(1, len(losses) // 5)
first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
summary = {"iterations": records[-1]["step"], "loss_first": first, "loss_last": last,
           "it_per_s": 1 / (sum(r["sec_per_it"] for r in records[1:]) / max(1, len(records) - 1)),
           "max_mem_gib": max(r.get("max_mem_gib", 0) for r in records),
           "nan": any(not math.isfinite(x) for x in losses)}
json.dump(summary, open(sys.argv[2], "w"), indent=1)
print(json.dumps(summary))
ok = not summary["nan"] and last < first
print("loss falls" if last < first else "LOSS DOES NOT FALL", "| no NaN" if not summary["nan"] else "| NaN")
sys.exit(0 if ok else 1)
EOF
}
check paper_training_amp train_paper

step "3. one-GPU torchrun DDP job (lite preset)"
ddp_job() {
  $PYTHON -m torch.distributed.run --standalone --nproc_per_node=1 -m isvos_lite.cli train --preset lite \
      --data "$WORLD" --out "$RUNS/ddp" --stage main --main-iters 30 --device cuda --val-every 0 --log-every 10 \
      --quiet > "$RUNS/ddp.log" 2>&1
  local status=$?
  tail -n 3 "$RUNS/ddp.log"
  [ "$status" -eq 0 ] && test -s "$RUNS/ddp/model.safetensors"
}
check ddp_one_gpu ddp_job

step "4. inference at 480x854 (fps, peak memory)"
bench() {  # bench PRESET FRAMES [--amp]
  local preset=$1 frames=$2; shift 2
  $PYTHON -m isvos_lite.cli benchmark --preset "$preset" --height 480 --width 854 --frames "$frames" --objects 2 \
      --device cuda "$@" --json > "$RUNS/bench.out" 2>&1
  local status=$?
  grep "^{" "$RUNS/bench.out" | sed "s/^{/{\"amp\": $([ "$*" = "--amp" ] && echo true || echo false), /" \
      | tee -a "$OUT_DIR/inference.jsonl"
  [ "$status" -eq 0 ] || { tail -n 5 "$RUNS/bench.out"; return 1; }
}
check bench_paper_fp32 bench paper 40
check bench_paper_amp bench paper 40 --amp
check bench_lite_fp32 bench lite 60
check bench_lite_amp bench lite 60 --amp

step "summary"
cat "$RUNS/results.txt"
$PYTHON - "$RUNS/results.txt" "$OUT_DIR" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[2])
results = {line.split()[0]: line.split()[1] for line in open(sys.argv[1])}
summary = {"checks": results}
if (out / "paper_training.json").exists():
    summary["paper_training"] = json.loads((out / "paper_training.json").read_text())
if (out / "inference.jsonl").exists():
    summary["inference"] = [json.loads(l) for l in open(out / "inference.jsonl") if l.startswith("{")]
(out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
EOF
echo "failed checks: $FAILED"
exit "$FAILED"
