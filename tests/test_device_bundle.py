"""benchmarks/device-bundle.sh and lspipe.devicebundle: the wheels a lent GPU machine lacks.

Unit tests of the closure (markers for the machine's Python 3.12, extras, the machine's own stack
left out), the wheel tags the machine accepts, the wheel-folder check and the environment check; and
the bundle's install, by benchmarks/device-run.sh's own install step, in a clean Python 3.12 virtual
environment with --no-index, so a missing or unusable wheel fails here, not on the GPU machine. That
test downloads the wheels once into a cache (LSPIPE_WHEEL_CACHE, default ~/.cache/lspipe/device-wheels)
and skips, saying why, where neither the cache nor PyPI can supply them."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO
from lspipe import devicebundle as db
from lspipe import devicecheck as dc

# --------------------------------------------------------------------------- the closure

FAKE = {
    "app": db.Dist("1.0", ["lib>=2", "old; python_version < '3.12'", "win; sys_platform == 'win32'",
                           "torch>=2", "web[socks]", "tomli; python_version < '3.11'", "lib2; python_version >= '3.12'"]),
    "lib": db.Dist("2.5", ["numpy>=1.20"]),
    "lib2": db.Dist("0.1", []),
    "web": db.Dist("3.0", ["socks-lib; extra == 'socks'", "never; extra == 'other'"]),
    "socks-lib": db.Dist("1.1", []),
    "torch": db.Dist("2.14.1", ["sympy", "filelock"]),
    "numpy": db.Dist("2.4.6", []),
    "slurm": db.Dist("1.0", ["pandas"]),
}


def fake(name):
    return FAKE.get(name.lower())


def test_closure_follows_the_machines_markers_and_extras_and_stops_at_its_own_stack():
    cl = db.closure(["app", "slurm"], fake, provided=("torch", "numpy"), excluded=("slurm",))
    # python 3.12 on linux: 'old', 'win' and 'tomli' do not apply; lib2 does (the venv here may be 3.11)
    assert cl.pins == {"app": "1.0", "lib": "2.5", "lib2": "0.1", "web": "3.0", "socks-lib": "1.1"}
    # the machine's stack is not bundled, nor what only it needs (sympy, filelock), nor the cluster plugin
    assert cl.from_device == {"torch": ["app: torch>=2"], "numpy": ["lib: numpy>=1.20"]}
    assert not cl.missing and not cl.unsatisfied


def test_closure_reports_what_is_not_installed_here_and_versions_a_requirer_excludes():
    cl = db.closure(["app>=2", "ghost"], fake, provided=("torch", "numpy"))
    assert cl.missing == ["ghost"]
    assert cl.unsatisfied == ["app 1.0 is installed here but pyproject.toml: app>=2"]


def test_the_bundle_closure_of_this_project_holds_snakemake_and_not_the_machines_stack():
    cl = db.closure(db.runtime_requirements(REPO / "pyproject.toml"))
    assert not cl.missing and not cl.unsatisfied
    assert {"snakemake", "pyyaml", "jsonschema", "tqdm", "scikit-learn", "rpds-py"} <= set(cl.pins)
    assert not set(cl.pins) & {"torch", "torchvision", "numpy", "scipy", "h5py", "matplotlib", "pandas",
                               "snakemake-executor-plugin-slurm"}
    import importlib.metadata as md

    assert cl.pins["snakemake"] == md.version("snakemake")


# --------------------------------------------------------------------------- wheels


@pytest.mark.parametrize("name, ok", [
    ("snakemake-9.27.1-py3-none-any.whl", True),
    ("humanfriendly-10.0-py2.py3-none-any.whl", True),
    ("pyyaml-6.0.4-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
    ("psutil-7.2.2-cp36-abi3-manylinux2010_x86_64.manylinux_2_12_x86_64.whl", True),
    ("scikit_learn-1.9.1-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", True),
    ("pyyaml-6.0.4-cp311-cp311-manylinux2014_x86_64.whl", False),       # another Python
    ("rpds_py-1.0-cp312-cp312-manylinux_2_34_x86_64.whl", False),       # a newer glibc than certain there
    ("rpds_py-1.0-cp312-cp312-musllinux_1_2_x86_64.whl", False),
    ("rpds_py-1.0-cp312-cp312-manylinux_2_17_aarch64.whl", False),
    ("rpds_py-1.0-cp312-cp312-win_amd64.whl", False),
    ("psutil-7.2.2-cp313-abi3-manylinux_2_17_x86_64.whl", False),       # abi3 from a newer Python
])
def test_wheel_tags_the_machine_accepts(name, ok):
    assert (db.wheel_problem(name) is None) == ok, db.wheel_problem(name)


def test_check_wheels_finds_missing_duplicate_stale_and_stray_wheels(tmp_path):
    for f in ("a-1.0-py3-none-any.whl", "b-2.0-py3-none-any.whl", "b-2.1-py3-none-any.whl",
              "c-0.9-py3-none-any.whl", "d-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "stray-1-py3-none-any.whl"):
        (tmp_path / f).write_bytes(b"")
    problems = db.check_wheels(tmp_path, {"a": "1.0", "b": "2.0", "c": "1.0", "d": "1.0", "e": "5"})
    text = "\n".join(problems)
    assert "a-1.0" not in text
    assert "b: 2 wheels" in text and "c-0.9-py3-none-any.whl: version 0.9, pinned 1.0" in text
    assert "d-1.0-cp311" in text and "not CPython 3.12" in text
    assert "e==5: no wheel" in text and "stray-1-py3-none-any.whl: not in the bundle's pins" in text
    assert "b-2.1-py3-none-any.whl: version 2.1, pinned 2.0" in text and len(problems) == 6
    (tmp_path / "empty").mkdir()
    assert db.check_wheels(tmp_path / "empty", {}) == []


def test_check_env_errors_on_the_bundle_and_warns_on_the_machines_stack():
    bundle = {"pins": {"app": "1.0", "lib": "2.5", "gone": "1"}, "provided_by_the_machine": ["numpy", "torch"]}
    env = {"app": db.Dist("1.0", ["lib>=3", "numpy>=3", "torch"]), "lib": db.Dist("2.4", []),
           "numpy": db.Dist("2.5.2", [])}
    errors, warnings = db.check_env(bundle, env.get)
    assert errors == ["lib is 2.4, but app requires lib>=3",
                      "lib is 2.4 here, the bundle pins 2.5 (an earlier entry on sys.path?)",
                      "gone==1 is not importable (not installed from the bundle)"]
    assert sorted(warnings) == ["numpy is 2.5.2, but app requires numpy>=3",
                                "torch (required by app: torch) is not installed"]


# --------------------------------------------------------------------------- a step's record


def test_a_steps_record_goes_to_every_steps_file_with_its_figures_and_its_json_is_copied(tmp_path):
    bench = {"results": [{"arch": "resnet56", "baseline": {"images_per_s": 1000.0},
                          "engine": {"images_per_s": 5000.0, "variant": "bf16+cl"}, "ratio": 5.0,
                          "fused": {"models": 6, "images_per_s": 12000.0, "speedup_vs_sequential": 2.4}}]}
    (tmp_path / "bench-eager.json").write_text(json.dumps(bench))
    copy = tmp_path / "copy"
    copy.mkdir()
    steps = [str(tmp_path / "a.jsonl"), str(copy / "steps.jsonl")]
    line, text = dc.record("bench-eager", 41, 120, 0, 60, str(tmp_path / "bench-eager.json"), steps, str(copy))
    assert json.loads((copy / "bench-eager.json").read_text()) == bench
    for f in steps:
        assert [json.loads(x) for x in Path(f).read_text().splitlines()] == [line]
    assert line["figures"]["resnet56"] == {"baseline_images_per_s": 1000.0, "engine_images_per_s": 5000.0,
                                           "engine_variant": "bf16+cl", "ratio": 5.0, "variants": {},
                                           "fused": {"models": 6, "images_per_s": 12000.0, "speedup_vs_sequential": 2.4}}
    assert text == ("[gpu-check +60s] bench-eager: ok in 41s (limit 120s) | resnet56 engine 5,000 img/s "
                    "(bf16+cl; baseline 1,000, 5.00x), 6 fused 2.40x")

    # a step killed at its limit, its file never written: still a line, saying so
    line, text = dc.record("bench-compiled", 240, 240, 124, 400, str(tmp_path / "bench-compiled.json"), steps, str(copy))
    assert line["exit"] == 124 and line["figures"] is None and "not written" in line["note"]
    assert "bench-compiled: FAILED: still running after its 240s limit" in text
    assert not (copy / "bench-compiled.json").exists()
    assert len(Path(steps[1]).read_text().splitlines()) == 2


def test_the_summary_checks_the_issues_goals_and_nvidia_smi_per_step(tmp_path):
    """The summary's goals come from the step files (a figure not measured is None, never met or missed),
    and nvidia-smi's samples are averaged over each step's window."""
    variants = {"bf16+cl": {"images_per_s": 9000.0, "config": {"engine": {"cuda_graph": False}}},
                "bf16+cl+graph": {"images_per_s": 30000.0, "config": {"engine": {"cuda_graph": True}}},
                "tf32+cl+graph": {"images_per_s": 28000.0, "config": {"engine": {"cuda_graph": False}}}}
    bench = {"results": [{"arch": "resnet56", "baseline": {"images_per_s": 9000.0}, "engine_variants": variants,
                          "fused_sizes": {"7": {"images_per_s": 50000.0}, "21": {"images_per_s": 90000.0}}}]}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    (tmp_path / "projection.json").write_text(json.dumps({"projection": {"total_hours": 0.05, "rates": {}, "rows": []}}))
    (tmp_path / "dump-check.json").write_text(json.dumps({"ok": True}))
    t0 = 1_800_000_000.0
    steps = [{"step": "machine", "seconds": 2, "limit_s": 60, "exit": 0, "elapsed_s": 2},
             {"step": "bench", "seconds": 10, "limit_s": 200, "exit": 0, "elapsed_s": 12}]
    (tmp_path / "steps.jsonl").write_text("".join(json.dumps(x) + "\n" for x in steps))
    import datetime

    stamp = lambda s: datetime.datetime.fromtimestamp(t0 + s).strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]  # noqa: E731
    (tmp_path / "smi.csv").write_text(f"{stamp(1)}, 5, 1, 500, 80\n{stamp(5)}, 90, 40, 9000, 400\n"
                                      f"{stamp(9)}, 70, 30, 9500, 350\n[N/A] garbage\n")
    s = dc.summary(tmp_path, smoke=False, t0=t0)
    goals = {g["goal"]: g for g in s["goals"]}
    assert goals["best eager variant / plain loop, ResNet-56"]["measured"] == 1.0
    assert goals["best eager variant / plain loop, ResNet-56"]["met"] is True
    assert goals["whole-step graph, one ResNet-56, images/s"]["measured"] == 30000.0  # a graph that captured
    assert goals["ResNet-56 x7 fused with the preset's clipping, model-images/s"]["met"] is False
    assert goals["ResNet-56 x21 fused, model-images/s"]["met"] is True
    assert goals["cifar10-gpu.yaml projected training, minutes"]["measured"] == 3.0
    assert goals["whole-step graph, one AlexNet, images/s"]["measured"] is None
    assert goals["whole-step graph, one AlexNet, images/s"]["met"] is None
    smi = s["nvidia_smi"]
    assert smi["samples"] == 3 and smi["by_step"]["machine"]["gpu_util_mean"] == 5.0
    assert smi["by_step"]["bench"]["gpu_util_mean"] == 80.0 and smi["by_step"]["bench"]["memory_used_mib_max"] == 9500
    assert s["ok"] and s["failed_steps"] == []


def test_a_projections_figures_are_recorded_without_copying_its_file(tmp_path):
    proj = {"projection": {"total_hours": 0.2, "missing_archs": [], "rates": {"resnet56": 8000.0},
                           "rows": [{"grid": "teachers cifar10/resnet56", "hours": 0.08},
                                    {"grid": "teachers cifar10/alexnet", "hours": 0.01}]}}
    (tmp_path / "projection-eager.json").write_text(json.dumps(proj))
    (tmp_path / "copy").mkdir()
    line, text = dc.record("projection-eager", 2, 30, 0, 100, str(tmp_path / "projection-eager.json"),
                           [str(tmp_path / "s.jsonl")], str(tmp_path / "copy"), copy=False)
    assert not any((tmp_path / "copy").iterdir())
    assert line["figures"]["total_hours"] == 0.2
    assert text.endswith("| 12.0 min = 0.20 h of training (teachers cifar10/resnet56 4.8 min, teachers cifar10/alexnet 0.6 min)")


# --------------------------------------------------------------------------- the bundle, installed


def _python312() -> str | None:
    """A working Python 3.12 (a pyenv shim on PATH may not run: each candidate is tried)."""
    for cand in (os.environ.get("LSPIPE_PYTHON312"), *sorted(map(str, Path("/root/.pyenv/versions").glob("3.12*/bin/python"))),
                 shutil.which("python3.12")):
        if cand and subprocess.run([cand, "-c", "import sys, venv; assert sys.version_info[:2] == (3, 12)"],
                                   capture_output=True).returncode == 0:
            return cand
    return None


def _pypi_reachable() -> str | None:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10).close()
        return None
    except OSError as err:
        return str(err)


def test_the_bundle_installs_with_no_index_in_a_clean_python312_and_runs_snakemake(tmp_path):
    py312 = _python312()
    if py312 is None:
        pytest.skip("no Python 3.12 here (set LSPIPE_PYTHON312): the bundle's wheels are for the machine's 3.12")
    cache = Path(os.environ.get("LSPIPE_WHEEL_CACHE", Path.home() / ".cache" / "lspipe" / "device-wheels"))
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    bundle_cmd = ["bash", str(REPO / "benchmarks" / "device-bundle.sh"), "--dest", str(cache)]
    with open(cache / ".lock", "w") as lock:  # test runs in other checkouts share the cache
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run([*bundle_cmd, "--offline"], capture_output=True, text=True, env=env, timeout=120)
        if proc.returncode != 0 and "--offline was given" in proc.stderr:
            why = _pypi_reachable()
            if why:
                pytest.skip(f"the wheel cache {cache} is incomplete and PyPI is unreachable ({why})")
            proc = subprocess.run(bundle_cmd, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert 'command: bash benchmarks/device-run.sh "$OUT"' in proc.stdout and 'carry: [".whl"]' in proc.stdout
        assert "of 64 MiB" in proc.stdout
        bundle = json.loads((cache / "bundle.json").read_text())
        assert bundle["bytes"] < 48 * 2**20  # leaves room for the working tree within the 64 MiB that travel
        wheels = tmp_path / "whl"  # a copy: the install must not depend on the cache staying put
        shutil.copytree(cache, wheels, ignore=shutil.ignore_patterns(".lock"))

    # a clean virtual environment: nothing but the wheels (no torch, numpy or scipy: warnings only)
    subprocess.run([py312, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=120)
    vpy = tmp_path / "venv" / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_FIND_LINKS")}
    work = tmp_path / "work"
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "device-run.sh"), "--install-only", str(tmp_path / "OUT")],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**clean, "PYTHON": str(vpy), "LSPIPE_WHEELS": str(wheels), "LSPIPE_DEVICE_WORK": str(work)})
    log = (tmp_path / "OUT" / "check.log").read_text()
    assert proc.returncode == 0, proc.stdout + proc.stderr + log[-3000:]
    import importlib.metadata as md

    assert f"preflight: snakemake {md.version('snakemake')} through {work}/bin/snakemake" in proc.stdout
    assert "check-env: OK: " in log and "ERROR" not in log
    warned = {line.split()[2] for line in log.splitlines() if line.startswith("check-env: warning")}
    # only the machine's own stack may be missing here (timm, for one, asks for torch and torchvision)
    from lspipe.devicebundle import PROVIDED

    assert warned <= set(PROVIDED), log

    # Snakemake runs a workflow there, with the packages lspipe needs besides the machine's stack
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "Snakefile").write_text(
        'rule all:\n    input: "b.txt"\n'
        'rule a:\n    output: "a.txt"\n    shell: "echo a > {output}"\n'
        'rule b:\n    input: "a.txt"\n    output: "b.txt"\n'
        '    run:\n        import yaml, jsonschema, tqdm, referencing\n'
        '        jsonschema.validate(yaml.safe_load("x: 1"), {"type": "object"})\n'
        '        open(output[0], "w").write(yaml.safe_dump({"ok": True}))\n')
    proc = subprocess.run([str(work / "bin" / "snakemake"), "--cores", "1", "-d", str(tmp_path / "wf"),
                           "-s", str(tmp_path / "wf" / "Snakefile")], capture_output=True, text=True, timeout=300,
                          env={**clean, "PYTHONPATH": f"{work / 'site'}:{REPO}"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "wf" / "b.txt").read_text() == "ok: true\n"
