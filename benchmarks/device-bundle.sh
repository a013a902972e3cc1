#!/usr/bin/env bash
# Prepare the GPU check for a lent GPU machine (Python 3.12, torch, torchvision, numpy, scipy, h5py and
# matplotlib there; no Snakemake, no internet), and print the one command to send there.
#
#   benchmarks/device-bundle.sh [--dest DIR] [--offline]
#
# Downloads into DIR (default .whl in the repository, ignored by git) the wheels of everything
# lspipe's runtime requirements pull in beyond that stack (Snakemake and its plugins' interfaces,
# PyYAML, jsonschema, tqdm, scikit-learn, ...), for CPython 3.12 on manylinux x86-64, pinned to the
# versions installed in this environment (the versions pyproject.toml resolves to here; see
# benchmarks/devicebundle.py for what is left out and why). Wheels already there at the pinned version are
# kept, so a second run needs no network (--offline: fail rather than download). Checks that the
# folder holds exactly one installable wheel per pin and that it and the working tree travel within
# the machine's 64 MiB. Prints the command and the `carry` list to give the device tool's `run`.
# PYTHON: the environment to pin from (default: python).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=$REPO/.whl
ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --dest) DEST=${2:?--dest needs a folder}; shift 2 ;;
    --offline) ARGS+=(--offline); shift ;;
    *) echo "usage: $0 [--dest DIR] [--offline]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python}
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)

PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$REPO/benchmarks/devicebundle.py" build \
  --pyproject "$REPO/pyproject.toml" --dest "$DEST" "${ARGS[@]}"

# What travels: the working tree (tracked and untracked-not-ignored files) and the carried folder.
LIMIT=$(( 64 * 1024 * 1024 ))
TREE=$(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
WHEELS=$(du -cb "$DEST"/*.whl "$DEST/bundle.json" | tail -1 | cut -f1)
echo "device-bundle: travels $(( (TREE + WHEELS) / 1024 / 1024 )) MiB of 64 MiB (working tree $(( TREE / 1024 )) KiB, wheels $(( WHEELS / 1024 )) KiB)"
if (( TREE + WHEELS >= LIMIT )); then
  echo "device-bundle: FAILED: the working tree and the wheels exceed the device's 64 MiB" >&2; exit 1
fi

case $DEST/ in
  "$REPO"/*) CARRY=${DEST#"$REPO"/}; PREFIX="" ;;
  *) CARRY=.whl; PREFIX="copy $DEST to $REPO/.whl first (carry must name a path in the repository); then "
     echo "device-bundle: note: $DEST is outside the repository" ;;
esac
[[ $CARRY == .whl ]] && ENV="" || ENV="LSPIPE_WHEELS=$CARRY "
cat <<EOF
device-bundle: ready. ${PREFIX}send, with the device tool's run:
  command: ${ENV}bash benchmarks/device-run.sh "\$OUT"
  carry: ["$CARRY"]
  timeout_s: 560
  (a rerun without torch.compile: ${ENV}bash benchmarks/device-run.sh --no-compile "\$OUT")
EOF
