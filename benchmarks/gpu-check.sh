#!/usr/bin/env bash
# One command that checks lspipe's GPU path and measures it:
#
#   benchmarks/gpu-check.sh [--no-compile] [--copy-to DIR] OUT_DIR          # on a CUDA machine, under 8 minutes
#   benchmarks/gpu-check.sh --smoke [--no-compile] [--copy-to DIR] OUT_DIR  # the same path on the CPU, tiny sizes (CI)
#
# On a lent machine, run it through benchmarks/device-run.sh (benchmarks/device-bundle.sh prints the command).
# Steps, cheapest and most telling first (the id each has in steps.jsonl, GPU_CHECK_LIMITS and the output):
#   machine             machine.json: GPU model, capability, memory, driver, torch / CUDA versions
#   bench-eager         bench-eager.json: `lspipe bench` ResNet-56 and AlexNet: baseline, engine (bf16 +
#                       channels_last), 6 fused
#   bench-distill       bench-distill.json: the hard teacher's 7-temperature family separate / lockstep / fused
#   workflow            workflow/: a short real training run through the workflow (snakemake: lspipe
#                       prepare, train, dump) in bf16 + channels_last + torch.compile
#   dump-check          dump-check.json: that run's float32 dump against a float32 CPU forward of the same weights
#   projection-eager    projection-eager.json: the GPU quick preset's projected training time
#                       (workflow/presets/cifar10-gpu.yaml) from the eager figures
#   bench-compiled      bench-compiled.json: the engine with torch.compile (the fused grid eager only)
#   projection-compiled projection.json: the projection from the compiled figures
# Then the summary, OUT_DIR/gpu-check.json. --no-compile leaves out the last two steps and trains the
# workflow run without torch.compile: nothing is compiled (projection.json is then the eager one).
#
# Output that survives a cut-off run: as each step ends, one JSON line (seconds, limit, exit status,
# the step's key figures) is appended to OUT_DIR/steps.jsonl, and one line naming the figures is printed
# to stdout. With --copy-to DIR (the folder that comes back from a lent machine) the line is also
# appended to DIR/steps.jsonl, the step's JSON is copied to DIR as it ends (the projections' figures go
# in steps.jsonl and the summary only: at most 8 files come back), and every step's own output goes to
# DIR/check.log (else OUT_DIR/check.log); the end of a failing step's output goes to stderr.
# Every step must succeed: any failure (no CUDA device without --smoke, a crash, a dump that does not
# match, a step over its time limit) stops the script with a non-zero exit status naming the step, and
# no summary is written. The whole check has a budget of GPU_CHECK_BUDGET seconds (480 on a GPU);
# GPU_CHECK_LIMITS="ID=SECONDS ..." overrides steps' own limits.
set -euo pipefail

SMOKE=0 COMPILE=1 COPY=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --smoke) SMOKE=1; shift ;;
    --no-compile) COMPILE=0; shift ;;
    --copy-to) COPY=${2:?--copy-to needs a folder}; shift 2 ;;
    -*) echo "gpu-check: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [[ $# -ne 1 ]]; then echo "usage: $0 [--smoke] [--no-compile] [--copy-to DIR] OUT_DIR" >&2; exit 2; fi
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
[[ -n $COPY ]] && COPY=$(mkdir -p "$COPY" && cd "$COPY" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python}
STEP="start"
trap 'echo "gpu-check FAILED at step: $STEP (see $OUT)" >&2' ERR
export PYTHONUNBUFFERED=1

"$PY" -c "import lspipe.cli, lspipe.devicecheck" 2>/dev/null || { echo "gpu-check: cannot import lspipe with $PY" >&2; exit 1; }

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

# Each step runs under a time limit (its own, or GPU_CHECK_LIMITS's, capped by what is left of the
# whole budget) and is recorded as it ends (lspipe.devicecheck record), so a run that is cut off still
# says where its time went and keeps every earlier figure. A step over its limit fails the check.
BUDGET=${GPU_CHECK_BUDGET:-$([[ $SMOKE -eq 1 ]] && echo 1500 || echo 480)}   # seconds, whole check
SCALE=$([[ $SMOKE -eq 1 ]] && echo 5 || echo 1)                            # CPU steps take longer
T0=$SECONDS
: > "$OUT/steps.jsonl"
LOG=${COPY:-$OUT}/check.log
[[ -z $COPY ]] && : > "$LOG"
RECORD=(--steps "$OUT/steps.jsonl")
[[ -n $COPY ]] && RECORD+=(--steps "$COPY/steps.jsonl" --copy-to "$COPY")
run_step() {  # run_step ID LIMIT_S JSON_FILE|- COMMAND...
  local name=$1 limit=$(( $2 * SCALE )) json=$3 rc=0 t=$SECONDS left over extra=()
  shift 3
  STEP=$name
  for over in ${GPU_CHECK_LIMITS:-}; do [[ ${over%%=*} == "$name" ]] && limit=${over#*=}; done
  left=$(( BUDGET - (SECONDS - T0) ))
  (( left < limit )) && limit=$left
  if (( limit <= 0 )); then
    echo "gpu-check FAILED before step: $name: the whole check's ${BUDGET}s budget (GPU_CHECK_BUDGET) is spent" >&2
    trap - ERR; exit 1
  fi
  echo "[gpu-check +$(( SECONDS - T0 ))s] $name: started (limit ${limit}s)"
  echo "=== [gpu-check +$(( SECONDS - T0 ))s] $name: $*" >> "$LOG"
  timeout --kill-after=15 "$limit" "$@" >> "$LOG" 2>&1 || rc=$?
  [[ $json != - ]] && extra=(--json "$json")
  [[ $json == */projection*.json ]] && extra+=(--no-copy)   # figures in steps.jsonl: at most 8 files come back
  "$PY" -m lspipe.devicecheck record --step "$name" --seconds $(( SECONDS - t )) --limit "$limit" --exit "$rc" \
      --elapsed $(( SECONDS - T0 )) "${extra[@]}" "${RECORD[@]}" \
    || printf '{"step": "%s", "seconds": %d, "limit_s": %d, "exit": %d, "note": "record failed"}\n' \
         "$name" $(( SECONDS - t )) "$limit" "$rc" | tee -a "$OUT/steps.jsonl" ${COPY:+"$COPY/steps.jsonl"}
  if (( rc != 0 )); then
    echo "--- the end of $name's output ($LOG; at most 40 lines, 4,000 characters):" >&2
    tail -n 40 "$LOG" | tail -c 4000 >&2   # the device returns 12,000 characters: keep the step lines
    if (( rc == 124 || rc == 137 )); then
      echo "gpu-check FAILED at step: $name: still running after its ${limit}s limit (see $OUT/steps.jsonl)" >&2
    else
      echo "gpu-check FAILED at step: $name (exit status $rc; see $LOG)" >&2
    fi
    trap - ERR; exit 1
  fi
}
LSPIPE=("$PY" -m lspipe.cli)

run_step machine 60 "$OUT/machine.json" "$PY" - "$OUT/machine.json" "$DEVICE" <<'EOF'
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
run_step bench-eager 120 "$OUT/bench-eager.json" "${LSPIPE[@]}" bench "${BENCH[@]}" --fuse "$FUSE" --out "$OUT/bench-eager.json"
run_step bench-distill 90 "$OUT/bench-distill.json" "${LSPIPE[@]}" bench "${DISTILL[@]}" --out "$OUT/bench-distill.json"

# A short real training run through the workflow's rules (prepare -> train -> dump), bf16 +
# channels_last + torch.compile (not under --no-compile), on the bundled digits (offline).
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
    compile: $([[ $COMPILE -eq 1 ]] && echo true || echo false)
    cpu_amp: true
    cpu_channels_last: true
teachers:
  - {dataset: digits, arch: $ARCH, recipe: check, alphas: [0.0], seeds: [0]}
EOF
DUMP="results/dumps/digits/$ARCH/teacher/a0_s0.h5"
run_step workflow 180 - \
  "$PY" -m snakemake -s "$REPO/Snakefile" -d "$WORK" --cores "$CORES" --configfile "$WORK/config.yaml" -- "$DUMP"
run_step dump-check 60 "$OUT/dump-check.json" \
  "$PY" "$REPO/benchmarks/dump_check.py" --data "$WORK/results/data/digits.npz" \
    --model "$WORK/results/models/digits/$ARCH/teacher/a0_s0/model.pt" --dump "$WORK/$DUMP" \
    --out "$OUT/dump-check.json"
run_step projection-eager 30 "$OUT/projection-eager.json" \
  "${LSPIPE[@]}" bench --figures "$OUT/bench-eager.json" --project "$REPO/workflow/presets/cifar10-gpu.yaml" \
    --out "$OUT/projection-eager.json"

if [[ $SMOKE -eq 1 || $COMPILE -eq 0 ]]; then
  # torch.compile on a CPU takes minutes per variant: --smoke compiles only the workflow run above
  # (one model, through the training engine) and projects from the eager figures
  if [[ $COMPILE -eq 0 ]]; then why="--no-compile"; else
    why="--smoke: the compiled bench is left out (CPU compile takes minutes per variant); the workflow run trains with torch.compile"; fi
  printf '{"not_run": "%s"}\n' "$why" > "$OUT/bench-compiled.json"
  [[ -n $COPY ]] && cp "$OUT/bench-compiled.json" "$COPY/"
  cp "$OUT/projection-eager.json" "$OUT/projection.json"
else
  # one compiled variant per arch (ResNet-56 fwd + bwd takes 46 s to compile on a 2-core EPYC);
  # the fused grids are measured eager above: their compiled graphs would double this step
  run_step bench-compiled 240 "$OUT/bench-compiled.json" "${LSPIPE[@]}" bench "${BENCH[@]}" --compile \
    --out "$OUT/bench-compiled.json"
  run_step projection-compiled 30 "$OUT/projection.json" \
    "${LSPIPE[@]}" bench --figures "$OUT/bench-compiled.json" --project "$REPO/workflow/presets/cifar10-gpu.yaml" \
      --out "$OUT/projection.json"
fi

STEP="summary"
SUMMARY=(--out "$OUT")
[[ $SMOKE -eq 1 ]] && SUMMARY+=(--smoke)
[[ -n $COPY ]] && SUMMARY+=(--copy-to "$COPY")
"$PY" -m lspipe.devicecheck summary "${SUMMARY[@]}"
