"""Shared fixtures: the tiny end-to-end workflow run (once per session) and helpers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "tiny.yaml"
CIFAR_SUBSET = REPO.parent / "shared" / "data" / "cifar10-jpg-subset"


def snakemake(workdir: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run the repository's workflow in ``workdir`` (its config.yaml is the one used)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    # the rules call the `lspipe` console script: put this interpreter's bin folder on PATH
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a (dry) run's "Job stats" table; {} when there is nothing to do."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    m = re.search(r"Job stats:\n(?:job\s+count\n)?-+\s+-+\n(.*?)\ntotal", text, re.S)
    assert m, f"no job stats in snakemake output:\n{text[-3000:]}"
    return {name: int(n) for name, n in re.findall(r"^(\S+)\s+(\d+)$", m.group(1), re.M)}


def make_workdir(root: Path, config: Path = TINY) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(config, root / "config.yaml")
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole DAG on tests/tiny.yaml, run once; returns the working directory."""
    work = make_workdir(tmp_path_factory.mktemp("tiny"))
    snakemake(work, "--cores", "2")
    return work


@pytest.fixture(scope="session")
def cifar_subset() -> Path:
    if not CIFAR_SUBSET.is_dir():
        pytest.skip(f"the real CIFAR-10 subset is absent ({CIFAR_SUBSET})")
    return CIFAR_SUBSET


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (small models: less overhead, less contention)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
