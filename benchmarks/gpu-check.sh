#!/usr/bin/env bash
# One command that checks lspipe's GPU path and measures it:
#
#   benchmarks/gpu-check.sh [--with-compile] [--copy-to DIR] OUT_DIR          # on a CUDA machine, within 480 s
#   benchmarks/gpu-check.sh --smoke [--copy-to DIR] OUT_DIR                   # the same path on the CPU, tiny sizes (CI)
#
# On a lent machine, run it through benchmarks/device-run.sh (benchmarks/device-bundle.sh prints the command).
# Steps, cheapest and most telling first (the id each has in steps.jsonl, GPU_CHECK_LIMITS and the output):
#   machine        machine.json: GPU model, capability, memory, driver, torch / CUDA versions
#   bench          bench.json: `lspipe bench` ResNet-56 and AlexNet, 3 interleaved repeats of 30 steps timed
#                  with CUDA events: the textbook DataLoader loop (its augmentation inside its window); the
#                  engine in fp32, fp32+cl, tf32+cl, bf16, bf16+cl and the whole-step CUDA graph (tf32+cl+graph,
#                  bf16+cl+graph); the fastest with the paper preset's recipe (clipping, loss scale); 7 and 21
#                  models fused, with peak memory; a torch.profiler anatomy (kernels, host ms, GPU-busy ms per step)
#   bench-distill  bench-distill.json: the hard teacher's 7 AlexNet students separate / lockstep / fused
#   jobs           jobs.json: one real 400-step fused teacher job and one fused student job end to end (wall,
#                  time to the first step, steady step time; the teacher job against its projection from
#                  bench.json), and 1 vs 3 processes training at once on the GPU (benchmarks/gpu_jobs.py)
#   workflow       a short real training run through the workflow (snakemake: prepare, train, dump) in the
#                  engine's GPU settings (bf16, channels_last, the step as a CUDA graph)
#   dump-check     that run's float32 dump against a float32 CPU forward of the same weights
#   projection     workflow/presets/cifar10-gpu.yaml and paper.yaml projected from bench.json,
#                  bench-distill.json and jobs.json (lspipe bench --figures ... --project)
#   cross-seed     OPTIONAL, only where benchmarks/cross_seed.py exists: its figures (cross-seed.json)
#   bench-compiled only with --with-compile: the engine with torch.compile (eager; it never runs as the
#                  engine's graph), last: it took 58 s on the first H100 run and lost to eager there
# Then the summary, OUT_DIR/gpu-check.json: every step's figures, the issue's GPU goals against what was
# measured, and nvidia-smi's utilisation sampled through the whole check (every 0.5 s, per step; skipped
# without nvidia-smi).
#
# Output that survives a cut-off run: as each step ends, one JSON line (seconds, limit, exit status,
# the step's key figures) is appended to OUT_DIR/steps.jsonl, and one line naming the figures is printed
# to stdout. With --copy-to DIR (the folder that comes back from a lent machine) the line is also
# appended to DIR/steps.jsonl, the step's JSON is copied to DIR as it ends (dump-check's and the
# projections' figures go in steps.jsonl and the summary only: at most 8 files come back), and every
# step's own output goes to DIR/check.log (else OUT_DIR/check.log); the end of a failing step's output
# goes to stderr. A step that fails (a crash, a step over its time limit) is a recorded figure, not the
# end: the check goes on with the next step, and exits non-zero at the end naming the failed steps.
# Only `machine` failing (no CUDA device without --smoke) or the whole budget spent stops it at once,
# without a summary. The whole check has a budget of GPU_CHECK_BUDGET seconds (480 on a GPU);
# GPU_CHECK_LIMITS="ID=SECONDS ..." overrides steps' own limits; GPU_CHECK_ONLY="ID ..." runs only
# those steps (a rerun of what failed).
set -euo pipefail

SMOKE=0 COMPILE=0 COPY=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --smoke) SMOKE=1; shift ;;
    --with-compile) COMPILE=1; shift ;;
    --no-compile) COMPILE=0; shift ;;   # the default now; kept for older command lines
    --copy-to) COPY=${2:?--copy-to needs a folder}; shift 2 ;;
    -*) echo "gpu-check: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [[ $# -ne 1 ]]; then echo "usage: $0 [--smoke] [--with-compile] [--copy-to DIR] OUT_DIR" >&2; exit 2; fi
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
  BENCH=(--smoke --device cpu --threads 2 --archs resnet8 --repeats 1 --fuse 2)   # batch 16, 2 steps
  DISTILL=(--smoke --device cpu --threads 2 --distill-only --repeats 1)
  JOBS=(--smoke)
  STEPS=6; BATCH=32; ARCH=resnet8; CORES=2
else
  DEVICE=cuda
  BENCH=(--archs resnet56 alexnet --device cuda --repeats 3 --steps 30 --fuse 7 21)
  DISTILL=(--device cuda --distill-only --distill-archs resnet56 alexnet --repeats 3 --steps 30)
  JOBS=(--device cuda --steps 400 --concurrency 3)
  STEPS=300; BATCH=128; ARCH=resnet20; CORES=4
fi

# Each step runs under a time limit (its own, or GPU_CHECK_LIMITS's, capped by what is left of the
# whole budget) and is recorded as it ends (lspipe.devicecheck record), so a run that is cut off still
# says where its time went and keeps every earlier figure.
BUDGET=${GPU_CHECK_BUDGET:-$([[ $SMOKE -eq 1 ]] && echo 1500 || echo 480)}   # seconds, whole check
SCALE=$([[ $SMOKE -eq 1 ]] && echo 5 || echo 1)                            # CPU steps take longer
T0=$SECONDS
T0_EPOCH=$(date +%s.%N)
: > "$OUT/steps.jsonl"
LOG=${COPY:-$OUT}/check.log
[[ -z $COPY ]] && : > "$LOG"
RECORD=(--steps "$OUT/steps.jsonl")
[[ -n $COPY ]] && RECORD+=(--steps "$COPY/steps.jsonl" --copy-to "$COPY")
FAILED=()

# nvidia-smi sampled through the whole check (utilisation, memory, power every 0.5 s), if there is one
SMI_PID=""
if [[ $SMOKE -eq 0 ]] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,power.draw \
    --format=csv,noheader,nounits -lms 500 > "$OUT/smi.csv" 2>/dev/null &
  SMI_PID=$!
fi
stop_smi() { [[ -n $SMI_PID ]] && kill "$SMI_PID" 2>/dev/null; SMI_PID=""; return 0; }
trap stop_smi EXIT

wanted() {  # wanted ID: whether GPU_CHECK_ONLY (if set) names the step
  [[ -z ${GPU_CHECK_ONLY:-} ]] && return 0
  local s; for s in $GPU_CHECK_ONLY; do [[ $s == "$1" ]] && return 0; done; return 1
}
run_step() {  # run_step ID LIMIT_S JSON_FILE|- [--no-copy] COMMAND...
  local name=$1 limit=$(( $2 * SCALE )) json=$3 rc=0 t=$SECONDS left over extra=()
  shift 3
  [[ ${1:-} == --no-copy ]] && { extra+=(--no-copy); shift; }
  wanted "$name" || return 0
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
  [[ $json != - ]] && extra+=(--json "$json")
  "$PY" -m lspipe.devicecheck record --step "$name" --seconds $(( SECONDS - t )) --limit "$limit" --exit "$rc" \
      --elapsed $(( SECONDS - T0 )) "${extra[@]}" "${RECORD[@]}" \
    || printf '{"step": "%s", "seconds": %d, "limit_s": %d, "exit": %d, "note": "record failed"}\n' \
         "$name" $(( SECONDS - t )) "$limit" "$rc" | tee -a "$OUT/steps.jsonl" ${COPY:+"$COPY/steps.jsonl"}
  if (( rc != 0 )); then
    echo "--- the end of $name's output ($LOG; at most 25 lines, 2,500 characters):" >&2
    tail -n 25 "$LOG" | tail -c 2500 >&2   # the device returns 12,000 characters: keep the step lines
    if (( rc == 124 || rc == 137 )); then
      echo "gpu-check FAILED at step: $name: still running after its ${limit}s limit (see $OUT/steps.jsonl)" >&2
    else
      echo "gpu-check FAILED at step: $name (exit status $rc; see $LOG)" >&2
    fi
    FAILED+=("$name")
    if [[ $name == machine ]]; then trap - ERR; exit 1; fi   # nothing else can run
    echo "gpu-check: going on with the next step" >&2
  fi
  return 0
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

# cheapest and most telling first: the engine's variants against the textbook loop (the headline), the
# distillation case, real jobs, the workflow and its dump check, the projections
PAPER="$REPO/workflow/presets/paper.yaml"
run_step bench 200 "$OUT/bench.json" "${LSPIPE[@]}" bench "${BENCH[@]}" --preset-recipes "$PAPER" --anatomy \
  --out "$OUT/bench.json"
run_step bench-distill 70 "$OUT/bench-distill.json" "${LSPIPE[@]}" bench "${DISTILL[@]}" --out "$OUT/bench-distill.json"
run_step jobs 110 "$OUT/jobs.json" "$PY" "$REPO/benchmarks/gpu_jobs.py" "${JOBS[@]}" --figures "$OUT/bench.json" \
  --out "$OUT/jobs.json"

# A short real training run through the workflow's rules (prepare -> train -> dump) in the engine's GPU
# settings (bf16, channels_last, the whole step as a CUDA graph), on the bundled digits (offline).
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
    precision: bf16
    channels_last: true
    cuda_graph: auto
    cpu_amp: true
    cpu_channels_last: true
teachers:
  - {dataset: digits, arch: $ARCH, recipe: check, alphas: [0.0], seeds: [0]}
EOF
DUMP="results/dumps/digits/$ARCH/teacher/a0_s0.h5"
run_step workflow 90 - \
  "$PY" -m snakemake -s "$REPO/Snakefile" -d "$WORK" --cores "$CORES" --configfile "$WORK/config.yaml" -- "$DUMP"
run_step dump-check 40 "$OUT/dump-check.json" --no-copy \
  "$PY" "$REPO/benchmarks/dump_check.py" --data "$WORK/results/data/digits.npz" \
    --model "$WORK/results/models/digits/$ARCH/teacher/a0_s0/model.pt" --dump "$WORK/$DUMP" \
    --out "$OUT/dump-check.json"
FIGS=("$OUT/bench.json" "$OUT/bench-distill.json" "$OUT/jobs.json")
run_step projection 30 "$OUT/projection.json" --no-copy \
  "${LSPIPE[@]}" bench --figures "${FIGS[@]}" --project "$REPO/workflow/presets/cifar10-gpu.yaml" \
    --out "$OUT/projection.json"
run_step projection-paper 30 "$OUT/projection-paper.json" --no-copy \
  "${LSPIPE[@]}" bench --figures "${FIGS[@]}" --project "$PAPER" --out "$OUT/projection-paper.json"

# OPTIONAL: fusing across seeds (issue 28, another part), measured only where its script exists
if [[ -f "$REPO/benchmarks/cross_seed.py" ]]; then
  run_step cross-seed 60 "$OUT/cross-seed.json" \
    "$PY" "$REPO/benchmarks/cross_seed.py" $([[ $SMOKE -eq 1 ]] && echo --smoke) --device "$DEVICE" \
      --out "$OUT/cross-seed.json"
fi

if [[ $COMPILE -eq 1 ]]; then  # last, and only when asked: one compiled variant per arch
  run_step bench-compiled 120 "$OUT/bench-compiled.json" --no-copy "${LSPIPE[@]}" bench "${BENCH[@]}" --compile \
    --out "$OUT/bench-compiled.json"
fi

STEP="summary"
stop_smi
SUMMARY=(--out "$OUT" --t0 "$T0_EPOCH")
[[ $SMOKE -eq 1 ]] && SUMMARY+=(--smoke)
[[ -n $COPY ]] && SUMMARY+=(--copy-to "$COPY")
rc=0
"$PY" -m lspipe.devicecheck summary "${SUMMARY[@]}" || rc=$?
if (( ${#FAILED[@]} )); then
  echo "gpu-check FAILED: step(s) ${FAILED[*]} (each recorded in steps.jsonl; the other steps ran)" >&2
  trap - ERR; exit 1
fi
trap - ERR
exit $rc
