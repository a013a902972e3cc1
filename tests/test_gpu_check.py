"""benchmarks/gpu-check.sh through benchmarks/device-run.sh, the command sent to a lent GPU machine.

``device-run.sh --smoke`` rehearses that very command on the CPU (the bench's variants, preset recipe,
fused group and anatomy, the distillation case, real jobs and concurrent processes, a workflow training
run in bf16 + channels_last, the float32 dump check and both projections), copying each step's files
into the folder that comes back as the step ends; a step that fails is recorded and the check goes
on. Without ``--smoke`` and without CUDA the check fails loudly instead of skipping. A step over its
limit leaves every earlier figure behind. (``--no-install``: this machine's Python is not the bundle's
3.12; tests/test_device_bundle.py installs the bundle in a clean Python 3.12.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu-check.sh"
DEVICE_RUN = REPO / "benchmarks" / "device-run.sh"
# what the device tool brings back: at most 8 files, named in letters, digits, '.', '_' and '-'
MAX_FILES = 8
NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def _run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=_env(), cwd=REPO)


def _device_run(tmp_path: Path, *args: str, timeout: int = 900, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(DEVICE_RUN), *args], capture_output=True, text=True, timeout=timeout,
                          env=_env(LSPIPE_DEVICE_WORK=str(tmp_path / "work"), **env), cwd=REPO)


def _steps(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _comes_back(copy: Path) -> None:
    files = [p for p in copy.rglob("*") if p.is_file()]
    assert len(files) <= MAX_FILES, sorted(p.name for p in files)
    assert all(NAME.match(p.name) and p.parent == copy for p in files), files


def test_without_cuda_the_gpu_check_fails_loudly(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the check would run, not fail")
    proc = _run(str(tmp_path / "out"), timeout=120)
    assert proc.returncode != 0
    assert "no CUDA device" in proc.stderr and "FAILED at step: machine" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_the_device_command_rehearsed_with_smoke_runs_the_gpu_path_on_the_cpu(tmp_path):
    copy = tmp_path / "OUT"
    proc = _device_run(tmp_path, "--smoke", "--no-install", str(copy))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    _comes_back(copy)
    optional = {"cross-seed.json"} if (REPO / "benchmarks" / "cross_seed.py").exists() else set()
    assert {"steps.jsonl", "check.log", "gpu-check.json", "machine.json", "bench.json", "bench-distill.json",
            "jobs.json", *optional} == {p.name for p in copy.iterdir()}
    # lspipe and snakemake were reached through the shims (scripts, not links)
    shim = tmp_path / "work" / "bin" / "lspipe"
    assert not shim.is_symlink() and f'exec "{sys.executable}" -m lspipe.cli' in shim.read_text()
    summary = json.loads((copy / "gpu-check.json").read_text())
    assert summary["ok"] and summary["smoke"] and not summary["failed_steps"]
    bench = summary["bench"]["resnet8"]
    # the variants, the preset's recipe, a fused group, the profiler's anatomy: each rehearsed
    assert {"fp32", "fp32+cl"} <= set(bench["variants"]) and bench["preset"]["recipe"] == "resnet56"
    assert bench["fused_sizes"]["2"]["images_per_s"] > 0 and bench["anatomy"]["host_ms_per_step"] > 0
    assert summary["distillation"]["modes"] and summary["distillation"]["ratios"]
    jobs = summary["jobs"]
    assert jobs["teacher"]["first_step_s"] > 0 and jobs["student"]["steady_step_ms"] > 0
    assert jobs["concurrency"]["speedup"] > 0
    assert summary["projection"]["rows"] and summary["projection_paper"]["rows"]
    assert [g["goal"] for g in summary["goals"]][:2] == ["best eager variant / plain loop, ResNet-56",
                                                        "best eager variant / plain loop, AlexNet"]
    assert summary["nvidia_smi"]["samples"] == 0  # no nvidia-smi on the CPU: skipped, said so

    # every step is recorded as it ends, with its figures, in the folder that comes back
    steps = _steps(copy / "steps.jsonl")
    names = [s["step"] for s in steps]
    assert names[:10] == ["snakemake-version", "preflight", "machine", "bench", "bench-distill", "jobs", "workflow",
                          "dump-check", "projection", "projection-paper"]
    assert names[10:] == (["cross-seed"] if optional else [])
    assert all(s["exit"] == 0 for s in steps)
    check_steps = steps[2:]
    assert [s["step"] for s in summary["steps"]] == names[2:]
    assert all(s["seconds"] <= s["limit_s"] for s in check_steps)
    by_name = {s["step"]: s for s in check_steps}
    eager = json.loads((copy / "bench.json").read_text())
    assert by_name["bench"]["figures"]["resnet8"]["engine_images_per_s"] == next(
        r["engine"]["images_per_s"] for r in eager["results"] if r["arch"] == "resnet8")
    assert by_name["dump-check"]["figures"]["ok"] is True
    assert by_name["projection"]["figures"]["priced_at"]  # the projection's file stays behind; its figures come
    # one line per step on stdout, as it ends, naming its figures
    for name in names[2:]:
        assert re.search(rf"^\[gpu-check \+\d+s\] {name}: ok in \d+s", proc.stdout, re.M), proc.stdout
    assert re.search(r"bench: ok .*resnet8 engine [\d,]+ img/s", proc.stdout)
    assert "preflight: snakemake" in proc.stdout and "gpu-check: OK" in proc.stdout
    # the steps' own output goes to check.log, not to the few kilobytes of output that come back
    assert "=== [gpu-check" in (copy / "check.log").read_text()
    assert len(proc.stdout) < 5000, proc.stdout

    check = summary["dump_check"]
    # trained in bf16 + channels_last through the workflow (the GPU settings; bf16 autocast on the CPU), dumped in float32
    assert check["trained_with"]["cpu_amp"] and check["trained_with"]["precision"] == "bf16"
    assert check["engine"]["precision"] == "bf16" and check["engine"]["bf16_weights_once_per_step"]
    assert check["dump_dtype"] == "float32" and check["prediction_agreement"] == 1.0
    assert check["relative_diff"] <= check["rtol"]
    assert check["bf16_detectable"]  # a bf16-rounded dump would have failed the check

    # the dump check fails loudly when the weights do not match the dump
    import torch

    out = tmp_path / "work" / "check"
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


def test_a_step_over_its_limit_is_a_recorded_failure_and_the_check_goes_on(tmp_path):
    copy = tmp_path / "OUT"
    proc = _device_run(tmp_path, "--smoke", "--no-install", str(copy), timeout=300, GPU_CHECK_LIMITS="bench=1",
                       GPU_CHECK_ONLY="machine bench projection-paper")
    assert proc.returncode != 0
    assert "gpu-check FAILED at step: bench: still running after its 1s limit" in proc.stderr, proc.stderr
    assert "gpu-check FAILED: step(s) bench" in proc.stderr
    assert re.search(r"^\[gpu-check \+\d+s\] bench: FAILED: still running after its 1s limit", proc.stdout, re.M)
    _comes_back(copy)
    steps = {s["step"]: s for s in _steps(copy / "steps.jsonl")}
    assert steps["machine"]["exit"] == 0 and steps["machine"]["figures"]["device"] == "cpu"
    assert steps["bench"]["exit"] in (124, 137) and steps["bench"]["limit_s"] == 1
    assert steps["projection-paper"]["exit"] != 0  # it went on (without figures to project from, it fails too)
    assert json.loads((copy / "machine.json").read_text())["device"] == "cpu"  # copied as its step ended
    summary = json.loads((copy / "gpu-check.json").read_text())  # a summary that says what failed
    assert not summary["ok"] and summary["failed_steps"] == ["bench", "projection-paper"]
    assert all(g["measured"] is None for g in summary["goals"])


def test_a_spent_budget_fails_loudly_naming_the_step(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), "--smoke", str(out)], capture_output=True, text=True,
                          timeout=300, env=_env(GPU_CHECK_BUDGET="2"), cwd=REPO)
    assert proc.returncode != 0
    assert "gpu-check FAILED" in proc.stderr and ("limit" in proc.stderr or "budget" in proc.stderr), proc.stderr
    assert not (out / "gpu-check.json").exists()  # no summary that a reader could trust


def test_the_device_command_without_a_bundle_fails_at_once_saying_what_to_do(tmp_path):
    proc = _device_run(tmp_path, str(tmp_path / "OUT"), timeout=60, LSPIPE_WHEELS=str(tmp_path / "none"))
    assert proc.returncode == 1
    assert "FAILED at step: install: no bundle in" in proc.stderr and "device-bundle.sh" in proc.stderr, proc.stderr
