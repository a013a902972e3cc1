#!/usr/bin/env bash
# The one command sent to a lent GPU machine (benchmarks/device-bundle.sh prepares the wheels and
# prints it): installs the bundle, puts `lspipe` on PATH, runs the GPU check, and copies its small
# files into COPY_DIR as each step ends.
#
#   bash benchmarks/device-run.sh [--smoke] [--with-compile] [--no-install | --install-only] COPY_DIR
#
#   (no option)     on the lent machine: COPY_DIR is "$OUT", the folder that comes back
#   --smoke         the same path on the CPU with tiny sizes (the test suite rehearses it so)
#   --with-compile  also time torch.compile, last (gpu-check.sh leaves it out by default)
#   --no-compile    nothing is compiled (the default; kept for older command lines)
#   --no-install    use the Python environment as it is (here, where Snakemake is installed)
#   --install-only  install, check the environment and the shims, run `snakemake --version`; no
#                   check (the test suite runs this in a clean Python 3.12 virtual environment)
#
# Steps: install (pip install --no-index --no-deps --target WORK/site of the bundle's wheels, first
# on PYTHONPATH: nothing the machine has installed is replaced), check-env (every bundled
# distribution at its pinned version with its requirements met; lspipe.devicebundle), shims (WORK/bin:
# `lspipe`, `snakemake`, `python` and `python3` as scripts that exec this Python; a symbolic link to
# a virtualenv's python loses the virtualenv), preflight, then benchmarks/gpu-check.sh --copy-to
# COPY_DIR with what is left of the budget (GPU_CHECK_BUDGET, 480 s on a GPU: the whole command).
# One line per step goes to stdout as it ends; each step's own output goes to COPY_DIR/check.log;
# each step's record to COPY_DIR/steps.jsonl. COPY_DIR holds at most 8 files (what comes back).
#
# Environment: PYTHON (default python3), LSPIPE_WHEELS (default REPO/.whl), LSPIPE_DEVICE_WORK
# (default /tmp/lspipe-device, emptied first), GPU_CHECK_BUDGET, GPU_CHECK_LIMITS (gpu-check.sh).
set -uo pipefail
export PYTHONUNBUFFERED=1

SMOKE=() COMPILE=() INSTALL=1 CHECK=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --smoke) SMOKE=(--smoke); shift ;;
    --no-compile) COMPILE=(--no-compile); shift ;;
    --with-compile) COMPILE=(--with-compile); shift ;;
    --no-install) INSTALL=0; shift ;;
    --install-only) CHECK=0; shift ;;
    -*) echo "device-run: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [[ $# -ne 1 ]]; then
  echo "usage: $0 [--smoke] [--with-compile] [--no-install | --install-only] COPY_DIR" >&2; exit 2
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COPY=$(mkdir -p "$1" && cd "$1" && pwd) || { echo "device-run: cannot create $1" >&2; exit 1; }
WHEELS=${LSPIPE_WHEELS:-$REPO/.whl}
WORK=${LSPIPE_DEVICE_WORK:-/tmp/lspipe-device}
LOG=$COPY/check.log
T0=$SECONDS
: > "$LOG"
: > "$COPY/steps.jsonl"

say() { echo "[device-run +$(( SECONDS - T0 ))s] $*"; }
log_step() {  # log_step NAME SECONDS EXIT: the step's line in steps.jsonl
  printf '{"step": "%s", "seconds": %d, "exit": %d, "elapsed_s": %d}\n' "$1" "$2" "$3" $(( SECONDS - T0 )) \
    >> "$COPY/steps.jsonl"
}
fail() {  # fail STEP MESSAGE
  echo "--- the end of $LOG (at most 40 lines, 4,000 characters):" >&2
  tail -n 40 "$LOG" | tail -c 4000 >&2
  say "FAILED at step: $1: $2" >&2
  exit 1
}
# run STEP COMMAND...: the command's output to check.log, its line to steps.jsonl
run() {
  local name=$1 t=$SECONDS rc=0
  shift
  echo "=== [device-run +$(( SECONDS - T0 ))s] $name: $*" >> "$LOG"
  "$@" >> "$LOG" 2>&1 || rc=$?
  log_step "$name" $(( SECONDS - t )) "$rc"
  return $rc
}

PY=$(command -v "${PYTHON:-python3}") || fail python "no ${PYTHON:-python3} on PATH (set PYTHON)"
rm -rf "$WORK" && mkdir -p "$WORK/bin" || fail work "cannot create $WORK (set LSPIPE_DEVICE_WORK)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

if [[ $INSTALL -eq 1 ]]; then
  [[ -f $WHEELS/bundle.json ]] || fail install "no bundle in $WHEELS: run benchmarks/device-bundle.sh first and carry .whl"
  run install "$PY" -m pip install --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
      --quiet --target "$WORK/site" "$WHEELS"/*.whl \
    || fail install "pip install of $WHEELS/*.whl into $WORK/site with $PY (see check.log)"
  export PYTHONPATH="$WORK/site:$PYTHONPATH"
  say "install: $(ls "$WHEELS"/*.whl | wc -l) wheels into $WORK/site with $PY"
  run check-env "$PY" -m lspipe.devicebundle check-env --bundle "$WHEELS/bundle.json" \
    || fail check-env "$(grep '^check-env: ERROR' "$LOG" | head -5 | tr '\n' ' ')"
  say "$(grep '^check-env: OK' "$LOG")$(grep '^check-env: warning' "$LOG" | head -3 | sed 's/^check-env: warning: /; /' | tr -d '\n')"
else
  say "install: skipped (--no-install): $PY with its own packages"
fi

# Shims: scripts, not links (a link to a virtualenv's python loses the virtualenv)
for shim in "lspipe:-m lspipe.cli" "snakemake:-m snakemake" "python:" "python3:"; do
  printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$PY" "${shim#*:}" > "$WORK/bin/${shim%%:*}"
  chmod +x "$WORK/bin/${shim%%:*}"
done
export PATH="$WORK/bin:$PATH" PYTHON="$PY"

run snakemake-version snakemake --version || fail preflight "snakemake --version through the shim (see check.log)"
SNAKEMAKE=$(tail -1 "$LOG")
if [[ $CHECK -eq 0 ]]; then
  say "preflight: snakemake $SNAKEMAKE through $(command -v snakemake); --install-only: no check"
  exit 0
fi
run preflight lspipe --help || fail preflight "lspipe --help through the shim (see check.log)"
say "preflight: snakemake $SNAKEMAKE, lspipe $(command -v lspipe), Python $("$PY" -c 'import sys; print(sys.version.split()[0])') ($PY)"

BUDGET=${GPU_CHECK_BUDGET:-$([[ ${#SMOKE[@]} -gt 0 ]] && echo 1500 || echo 480)}
export GPU_CHECK_BUDGET=$(( BUDGET - (SECONDS - T0) ))
bash "$REPO/benchmarks/gpu-check.sh" "${SMOKE[@]}" "${COMPILE[@]}" --copy-to "$COPY" "$WORK/check"
rc=$?
say "done: exit status $rc; in $COPY: $(cd "$COPY" && ls | tr '\n' ' ')"
exit $rc
