#!/usr/bin/env bash
# Paper-scale check on a machine with one CUDA GPU (about 3-5 minutes):
#   1. trains configs/sudoku9-extreme.yaml (27.3M parameters, batch 768, bf16 autocast) on
#      generated 9x9 puzzles for STEPS steps and prints one JSON object with segments/s,
#      FLOPs per segment, MFU against the GPU's bf16 torch.mm peak measured in the same run,
#      and peak memory (torch.cuda.max_memory_allocated);
#   2. prints the memory table of `hrm-rl bench memory` (1-step gradient vs BPTT) on the GPU.
#
#   bash bench/gpu_check.sh                      # uses/creates ./.venv
#   STEPS=500 TRAIN_SIZE=2000 bash bench/gpu_check.sh
#
# Environment knobs: VENV (default .venv), STEPS (300), WARMUP (20 untimed steps),
# TRAIN_SIZE (1000 generated training puzzles, the paper's subset size; generation costs
# about 30 ms per puzzle on one CPU core), BATCH (768), COMPILE (0/1), MEMORY (1: run step 2).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV (pip install -e .: needs a CUDA build of torch from your index)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -e .
fi
PY="$VENV/bin/python"

"$PY" - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: no CUDA device visible to torch {torch.__version__} "
             f"(CUDA build: {torch.version.cuda}); install a CUDA build of torch in the venv")
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}", file=sys.stderr)
EOF

STEPS=${STEPS:-300} WARMUP=${WARMUP:-20} TRAIN_SIZE=${TRAIN_SIZE:-1000} BATCH=${BATCH:-768} \
COMPILE=${COMPILE:-0} "$PY" - <<'EOF'
import json, os, time

import torch

from hrm_rl.agents.trainer import ACTTrainer
from hrm_rl.model.flops import matmul_peak_gflops, segment_flops
from hrm_rl.config import load_config

steps, warmup = int(os.environ["STEPS"]), int(os.environ["WARMUP"])
config = load_config("configs/sudoku9-extreme.yaml", [
    f"data.train_size={os.environ['TRAIN_SIZE']}", "data.test_size=200",
    f"train.batch_size={os.environ['BATCH']}", "train.precision=bf16", "train.device=cuda",
    f"train.compile={'true' if os.environ['COMPILE'] == '1' else 'false'}",
    f"train.steps={steps + warmup}", "train.eval_size=200"])
device = torch.device("cuda")
peak_bf16 = matmul_peak_gflops(device, torch.bfloat16)
peak_fp32 = matmul_peak_gflops(device, torch.float32)

start = time.perf_counter()
trainer = ACTTrainer(config, run_dir=None, progress=True)  # generates + caches the puzzles
setup_s = time.perf_counter() - start
for _ in range(warmup):
    trainer.train_step()
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats()
start = time.perf_counter()
for _ in range(steps):
    stats = trainer.train_step()
torch.cuda.synchronize()
seconds = time.perf_counter() - start

model = trainer.model
flops = segment_flops(model.config, config.train.max_segments, model.prefix_len)
segments_per_s = steps * config.train.batch_size / seconds
achieved = segments_per_s * flops.train / 1e9
result = trainer.evaluate(200)
print(json.dumps({
    "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
    "parameters": model.num_parameters(), "batch_size": config.train.batch_size,
    "precision": config.train.precision, "compile": config.train.compile,
    "train_puzzles": len(trainer.train_set), "setup_s": round(setup_s, 1),
    "timed_steps": steps, "seconds": round(seconds, 2),
    "segments_per_s": round(segments_per_s, 1),
    "step_ms": round(1000 * seconds / steps, 2),
    "flops_per_segment": flops.to_dict(),
    "achieved_tflops": round(achieved / 1e3, 2),
    "matmul_peak_tflops": {"bf16": round(peak_bf16["gflops"] / 1e3, 1),
                           "fp32": round(peak_fp32["gflops"] / 1e3, 1)},
    "mfu_vs_measured_bf16_peak": round(achieved / peak_bf16["gflops"], 4),
    "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    "last_step": stats.__dict__,
    "eval_200_after_training": {"exact_acc_qhalt": result.exact_acc_qhalt,
                                "cell_acc_qhalt": result.cell_acc_qhalt},
}, indent=2))
EOF

if [ "${MEMORY:-1}" = "1" ]; then
  "$PY" -m hrm_rl.cli bench memory --device cuda --hidden 512 --layers 4 --batch 16 \
    --cycles 1,2,4,8
fi
