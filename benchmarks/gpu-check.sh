#!/usr/bin/env bash
# One command that checks lspipe's GPU path and measures it:
#
#   benchmarks/gpu-check.sh OUT_DIR            # on a CUDA machine, under 8 minutes
#   benchmarks/gpu-check.sh --smoke OUT_DIR    # the same path on the CPU with tiny sizes (CI)
#
# Writes under OUT_DIR (summary: OUT_DIR/gpu-check.json):
#   machine.json        GPU model, capability, memory, driver, torch / CUDA versions
#   bench-eager.json    `lspipe bench` ResNet-56 and AlexNet: baseline, engine (bf16 + channels_last), 6 fused
#   bench-compiled.json the same with torch.compile (baseline and engine; the fused grid eager only)
#   bench-distill.json  the distillation case: the hard teacher's 7-temperature family separate / lockstep / fused
#   projection.json     the GPU quick preset's projected training time (workflow/presets/cifar10-gpu.yaml),
#                       from the compiled figures (projection-eager.json: from the eager ones)
#   workflow/           a short real training run through the workflow (snakemake: lspipe prepare, train,
#                       dump) in bf16 + channels_last + torch.compile
#   dump-check.json     that run's float32 dump against a float32 CPU forward of the same weights
#   steps.jsonl         one line per step as it ends: seconds taken, its limit, exit status
# Every step must succeed: any failure (no CUDA device without --smoke, a crash, a dump that does
# not match, a step over its time limit) stops the script with a non-zero exit status and a message
# naming the step. The whole check has a budget of GPU_CHECK_BUDGET seconds (480 on a GPU).
set -euo pipefail

SMOKE=0
if [[ "${1:-}" == "--smoke" ]]; then SMOKE=1; shift; fi
if [[ $# -ne 1 ]]; then echo "usage: $0 [--smoke] OUT_DIR" >&2; exit 2; fi
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python}
STEP="start"
trap 'echo "gpu-check FAILED at step: $STEP (see $OUT)" >&2' ERR
export PYTHONUNBUFFERED=1

"$PY" -c "import lspipe.cli" 2>/dev/null || { echo "gpu-check: cannot import lspipe with $PY" >&2; exit 1; }

if [[ $SMOKE -eq 1 ]]; then
  DEVICE=cpu
  BENCH=(--smoke --device cpu --threads 2)          # resnet8 + smallcnn, batch 16, 2 steps
  FUSE=2
  DISTILL=(--smoke --device cpu --threads 2 --distill-only)
  STEPS=6; BATCH=32; ARCH=resnet8; CORES=2
else
  DEVICE=cuda
  BENCH=(--archs resnet56 alexnet --device cuda)
  FUSE=6
  DISTILL=(--device cuda --distill-only --distill-archs resnet56 alexnet)
  STEPS=300; BATCH=128; ARCH=resnet20; CORES=4
fi

# Each step runs under a time limit (its own, capped by what is left of the whole budget) and is
# logged as it ends: OUT_DIR/steps.jsonl gets one line per step (seconds, limit, exit status), so a
# run that is cut off still says where its time went. A step over its limit fails the check.
BUDGET=${GPU_CHECK_BUDGET:-$([[ $SMOKE -eq 1 ]] && echo 1500 || echo 480)}   # seconds, whole check
SCALE=$([[ $SMOKE -eq 1 ]] && echo 5 || echo 1)                            # CPU steps take longer
T0=$SECONDS
: > "$OUT/steps.jsonl"
run_step() {  # run_step NAME LIMIT_S COMMAND... (STEP_LOG=FILE: the command's output goes there)
  local name=$1 limit=$(( $2 * SCALE )) rc=0 t=$SECONDS left
  shift 2
  STEP=$name
  left=$(( BUDGET - (SECONDS - T0) ))
  (( left < limit )) && limit=$left
  if (( limit <= 0 )); then
    echo "gpu-check FAILED before step: $name: the whole check's ${BUDGET}s budget (GPU_CHECK_BUDGET) is spent" >&2
    trap - ERR; exit 1
  fi
  echo "[gpu-check +$(( SECONDS - T0 ))s] $name (limit ${limit}s)" >&2
  if [[ -n "${STEP_LOG:-}" ]]; then
    timeout --kill-after=15 "$limit" "$@" > "$STEP_LOG" 2>&1 || rc=$?
  else
    timeout --kill-after=15 "$limit" "$@" || rc=$?
  fi
  printf '{"step": "%s", "seconds": %d, "limit_s": %d, "exit": %d}\n' "$name" $(( SECONDS - t )) "$limit" "$rc" \
    >> "$OUT/steps.jsonl"
  if (( rc != 0 )); then
    [[ -n "${STEP_LOG:-}" ]] && tail -50 "$STEP_LOG" >&2
    if (( rc == 124 || rc == 137 )); then
      echo "gpu-check FAILED at step: $name: still running after its ${limit}s limit (see $OUT/steps.jsonl)" >&2
    else
      echo "gpu-check FAILED at step: $name (exit status $rc; see $OUT)" >&2
    fi
    trap - ERR; exit 1
  fi
  echo "[gpu-check +$(( SECONDS - T0 ))s] $name done in $(( SECONDS - t ))s" >&2
}
LSPIPE=("$PY" -m lspipe.cli)

run_step "machine" 60 "$PY" - "$OUT/machine.json" "$DEVICE" <<'EOF'
import json, platform, subprocess, sys
import torch
out, device = sys.argv[1], sys.argv[2]
info = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine()}
if device == "cuda":
    if not torch.cuda.is_available():
        sys.exit("gpu-check: no CUDA device (torch.cuda.is_available() is False); use --smoke for the CPU check")
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                memory_gib=round(p.total_memory / 2**30, 1), gpus=torch.cuda.device_count(),
                bf16_supported=torch.cuda.is_bf16_supported())
    try:
        info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit",
                                             "--format=csv,noheader"], capture_output=True, text=True,
                                            timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        info["nvidia_smi"] = f"unavailable: {e}"
else:
    info["gpu"] = None
json.dump(info, open(out, "w"), indent=2)
print(json.dumps(info))
EOF

# cheapest and most telling first: the eager figures, the distillation case, the workflow run and
# its dump check, a projection from the eager figures; then torch.compile (the slowest step) and
# the projection from the compiled figures
run_step "bench eager" 120 "${LSPIPE[@]}" bench "${BENCH[@]}" --fuse "$FUSE" --out "$OUT/bench-eager.json"
run_step "bench distillation" 90 "${LSPIPE[@]}" bench "${DISTILL[@]}" --out "$OUT/bench-distill.json"

# A short real training run through the workflow's rules (prepare -> train -> dump), bf16 +
# channels_last + torch.compile, on the bundled digits (offline).
WORK="$OUT/workflow"
mkdir -p "$WORK"
cat > "$WORK/config.yaml" <<EOF
results: results
device: $DEVICE
threads: 2
progress: false
resources: {gpus_per_job: $([[ $DEVICE == cuda ]] && echo 1 || echo 0)}
datasets:
  digits: {source: digits, val_size: 0.2, test_size: 0.25, split_seed: 0}
recipes:
  check:
    steps: $STEPS
    batch_size: $BATCH
    lr: 0.05
    lr_milestones: [$((STEPS / 2))]
    grad_clip: 1.0
    augment: {pad: 1, flip: false}
    amp: true
    channels_last: true
    compile: true
    cpu_amp: true
    cpu_channels_last: true
teachers:
  - {dataset: digits, arch: $ARCH, recipe: check, alphas: [0.0], seeds: [0]}
EOF
DUMP="results/dumps/digits/$ARCH/teacher/a0_s0.h5"
STEP_LOG="$WORK/snakemake.log" run_step "workflow training run" 180 \
  "$PY" -m snakemake -s "$REPO/Snakefile" -d "$WORK" --cores "$CORES" --configfile "$WORK/config.yaml" -- "$DUMP"
run_step "float32 dump against a float32 forward" 60 \
  "$PY" "$REPO/benchmarks/dump_check.py" --data "$WORK/results/data/digits.npz" \
    --model "$WORK/results/models/digits/$ARCH/teacher/a0_s0/model.pt" --dump "$WORK/$DUMP" \
    --out "$OUT/dump-check.json"
run_step "projection of the GPU quick preset (eager figures)" 30 \
  "${LSPIPE[@]}" bench --figures "$OUT/bench-eager.json" --project "$REPO/workflow/presets/cifar10-gpu.yaml" \
    --out "$OUT/projection-eager.json"

if [[ $SMOKE -eq 1 ]]; then
  # torch.compile on a CPU takes minutes per variant: --smoke compiles only the workflow run above
  # (one model, through the training engine) and projects from the eager figures
  echo '{"not_run": "--smoke: the compiled bench is left out (CPU compile takes minutes per variant); the workflow run trains with torch.compile"}' \
    > "$OUT/bench-compiled.json"
  cp "$OUT/projection-eager.json" "$OUT/projection.json"
else
  # one compiled variant per arch (ResNet-56 fwd + bwd takes 46 s to compile on a 2-core EPYC);
  # the fused grids are measured eager above: their compiled graphs would double this step
  run_step "bench compiled" 240 "${LSPIPE[@]}" bench "${BENCH[@]}" --compile \
    --out "$OUT/bench-compiled.json"
  run_step "projection of the GPU quick preset (compiled figures)" 30 \
    "${LSPIPE[@]}" bench --figures "$OUT/bench-compiled.json" --project "$REPO/workflow/presets/cifar10-gpu.yaml" \
      --out "$OUT/projection.json"
fi

STEP="summary"
"$PY" - "$OUT" "$SMOKE" <<'EOF'
import json, sys
from pathlib import Path
out, smoke = Path(sys.argv[1]), sys.argv[2] == "1"
load = lambda n: json.loads((out / n).read_text())
summary = {"smoke": smoke, "machine": load("machine.json"), "bench": {}, "dump_check": load("dump-check.json"),
           "steps": [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]}
for name in ("eager", "compiled"):
    b = load(f"bench-{name}.json")
    if "not_run" in b:
        summary["bench"][name] = b
        continue
    summary["bench"][name] = {r["arch"]: {"baseline_images_per_s": r["baseline"]["images_per_s"],
                                          "engine_images_per_s": r["engine"]["images_per_s"],
                                          "engine_variant": r["engine"]["variant"], "ratio": r["ratio"],
                                          "fused": {k: r["fused"][k] for k in ("models", "images_per_s",
                                                                              "speedup_vs_sequential")}
                                                   if "fused" in r else None}
                              for r in b["results"]}
summary["bench"]["distillation"] = load("bench-distill.json").get("distillation")
pr = load("projection.json")["projection"]
summary["projection_eager_figures"] = load("projection-eager.json")["projection"]["total_hours"]
summary["projection"] = {"config": pr["config"], "total_hours": pr["total_hours"],
                         "total_minutes": None if pr["total_hours"] is None else pr["total_hours"] * 60,
                         "rates": pr["rates"], "rows": pr["rows"]}
summary["ok"] = bool(summary["dump_check"]["ok"]) and (smoke or pr["total_hours"] is not None)
(out / "gpu-check.json").write_text(json.dumps(summary, indent=2))
print(f"gpu-check: {'OK' if summary['ok'] else 'FAILED'}; projected GPU-preset training "
      f"{summary['projection']['total_minutes'] or float('nan'):.1f} min; summary -> {out / 'gpu-check.json'}")
sys.exit(0 if summary["ok"] else 1)
EOF
