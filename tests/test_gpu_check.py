"""benchmarks/gpu-check.sh: --smoke runs the GPU check's path on the CPU (bench, the distillation
case, a projection, a workflow training run with bf16 + channels_last + compile, and the float32
dump check); without --smoke and without CUDA it fails loudly instead of skipping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu-check.sh"


def _run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO)


def test_without_cuda_the_gpu_check_fails_loudly(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the check would run, not fail")
    proc = _run(str(tmp_path / "out"), timeout=120)
    assert proc.returncode != 0
    assert "no CUDA device" in proc.stderr and "FAILED at step: machine" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_gpu_check_smoke_runs_the_same_path_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    proc = _run("--smoke", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    summary = json.loads((out / "gpu-check.json").read_text())
    assert summary["ok"] and summary["smoke"]
    assert {"resnet8", "smallcnn"} <= set(summary["bench"]["eager"])
    assert summary["bench"]["eager"]["resnet8"]["fused"]["models"] == 2
    assert summary["bench"]["distillation"]["modes"] and summary["bench"]["distillation"]["ratios"]
    assert summary["projection"]["rows"]
    # every step is timed as it ends, so a run cut off still says where its time went
    steps = [s["step"] for s in summary["steps"]]
    assert steps[0] == "machine" and "workflow training run" in steps and "bench eager" in steps
    assert all(s["exit"] == 0 and s["seconds"] <= s["limit_s"] for s in summary["steps"])
    check = summary["dump_check"]
    # trained in bf16 + channels_last + compile through the workflow, dumped in float32
    assert check["trained_with"]["cpu_amp"] and check["trained_with"]["compile"]
    assert check["dump_dtype"] == "float32" and check["prediction_agreement"] == 1.0
    assert check["relative_diff"] <= check["rtol"]
    assert check["bf16_detectable"]  # a bf16-rounded dump would have failed the check

    # the dump check fails loudly when the weights do not match the dump
    import torch

    model = out / "workflow" / "results" / "models" / "digits" / "resnet8" / "teacher" / "a0_s0" / "model.pt"
    blob = torch.load(model, map_location="cpu", weights_only=False)
    w = next(k for k, v in blob["state_dict"].items() if k.endswith("weight") and v.ndim == 4)
    blob["state_dict"][w] = blob["state_dict"][w] * 1.01
    torch.save(blob, tmp_path / "tampered.pt")
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "dump_check.py"),
                          "--data", str(out / "workflow" / "results" / "data" / "digits.npz"),
                          "--model", str(tmp_path / "tampered.pt"),
                          "--dump", str(out / "workflow" / "results" / "dumps" / "digits" / "resnet8" / "teacher" / "a0_s0.h5"),
                          "--out", str(tmp_path / "check.json")],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 1 and "FAIL" in res.stderr, res.stderr[-2000:]


def test_a_step_over_the_time_budget_fails_loudly_naming_it(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO), "GPU_CHECK_BUDGET": "2"}
    proc = subprocess.run(["bash", str(SCRIPT), "--smoke", str(out)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)
    assert proc.returncode != 0
    assert "gpu-check FAILED" in proc.stderr and ("limit" in proc.stderr or "budget" in proc.stderr), proc.stderr
    assert not (out / "gpu-check.json").exists()  # no summary that a reader could trust
