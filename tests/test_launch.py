"""GPUs per model (lspipe.launch): layouts, SLURM resources, the launch command line, the training rules of
the ImageNet preset on the slurm profile (dry run), and its GPU-hours from the FLOP count (lspipe bench)."""

from __future__ import annotations

import csv
import os
import re
import shlex
import sys

import pytest
import yaml

from conftest import REPO, make_workdir, snakemake
from lspipe import launch
from lspipe.bench import projection, report
from lspipe.bench.flops import flops_per_image
from lspipe.base.errors import ConfigError
from lspipe.workflow import jobs
from test_slurm import PROFILES, planned

IMAGENET = REPO / "workflow" / "presets" / "imagenet.yaml"
TRAIN = ["lspipe", "train", "--data", "d.npz", "--threads", "4"]
RUN = [sys.executable, "-m", "torch.distributed.run"]


# --------------------------------------------------------------------------- layouts and resources
def test_layout_splits_gpus_into_whole_nodes():
    assert jobs.layout(1, 8) == jobs.Layout(1, 1, 1) and jobs.layout(1, 8).single
    assert jobs.layout(8, 8) == jobs.Layout(8, 1, 8)
    assert jobs.layout(4, 8) == jobs.Layout(4, 1, 4)
    assert jobs.layout(16, 8) == jobs.Layout(16, 2, 8) and jobs.layout(16, 8).multi_node
    assert jobs.layout("auto", 8) == jobs.Layout("auto", 1, None)
    with pytest.raises(ConfigError, match=r"resources.gpus_per_model 12 .*multiple of 8"):
        jobs.layout(12, 8)
    with pytest.raises(ConfigError, match="whole number"):
        jobs.layout(0, 8)
    jobs.check_batch(jobs.layout(8, 8), 1024, "r", "resources.gpus_per_model")
    with pytest.raises(ConfigError, match=r"recipes.r.batch_size 100 .* divide by 8"):
        jobs.check_batch(jobs.layout(8, 8), 100, "r", "resources.gpus_per_model")


def test_rule_resources_per_layout():
    none = {"nodes": None, "tasks": None, "mpi": None, "slurm_extra": None, "cpus_per_task": None}
    # one GPU (the default) and auto: exactly the resources of before (gpus_per_job, the GPU model)
    assert jobs.rule_resources(jobs.layout(1, 8), gpus_per_job=1, gpu_model="a100", threads=4) == {
        "gpu": 1, "gpu_model": "a100", **none}
    assert jobs.rule_resources(jobs.layout("auto", 8), gpus_per_job=2, gpu_model=None, threads=4) == {
        "gpu": 2, "gpu_model": None, **none}
    # one node: --gpus=N and threads per process x N CPUs
    assert jobs.rule_resources(jobs.layout(8, 8), gpus_per_job=1, gpu_model="h100", threads=4) == {
        "gpu": 8, "gpu_model": "h100", **none, "cpus_per_task": 32}
    # two nodes: one task per node, the GPUs per node through slurm_extra, the command in the batch script (mpi)
    assert jobs.rule_resources(jobs.layout(16, 8), gpus_per_job=1, gpu_model="h100", threads=4) == {
        "gpu": None, "gpu_model": None, "nodes": 2, "tasks": 2, "mpi": "srun",
        "slurm_extra": "--gpus-per-node=h100:8", "cpus_per_task": 32}


# --------------------------------------------------------------------------- the command line
def test_launch_command_one_node_two_nodes_auto():
    assert launch.command(TRAIN, 1) == TRAIN  # one GPU: the training command itself
    assert launch.command(TRAIN, 8) == [*RUN, "--standalone", "--nproc-per-node=8", "--no-python", *TRAIN]
    alloc = launch.Allocation("4711", "gpu003", 32)
    assert launch.command(TRAIN, 16, 2, allocation=lambda env: alloc) == [
        "srun", "--jobid=4711", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--cpus-per-task=32",
        "--gpus-per-node=8", "--mem=0", "--kill-on-bad-exit=1", *RUN, "--nnodes=2", "--nproc-per-node=8",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=gpu003:{20000 + 4711}", "--rdzv-id=lspipe-4711", "--no-python", *TRAIN]
    with pytest.raises(launch.LaunchError, match="needs a SLURM allocation"):
        launch.command(TRAIN, 16, 2, environ={})
    with pytest.raises(launch.LaunchError, match="evenly"):
        launch.command(TRAIN, 9, 2, allocation=lambda env: alloc)
    # auto: decided by the GPUs this machine has, plain training with one or none
    for n, expected in ((0, TRAIN), (1, TRAIN), (4, [*RUN, "--standalone", "--nproc-per-node=4", "--no-python", *TRAIN])):
        assert launch.command(TRAIN, "auto", device_count=lambda n=n: n) == expected


def test_slurm_allocation_from_the_environment_or_scontrol(monkeypatch):
    """Inside a job of the Snakemake SLURM plugin only SLURM_JOB_ID is left: the node list and the CPUs per
    task then come from `scontrol show job`, the first host from `scontrol show hostnames`."""
    calls = []

    def scontrol(*args):
        calls.append(args)
        if args[:2] == ("show", "job"):
            return "JobId=77 NodeList=gpu[07-08] NumNodes=2 CPUs/Task=64 TresPerNode=gres:gpu:8\n"
        return "gpu07\ngpu08\n" if args[:2] == ("show", "hostnames") else ""

    monkeypatch.setattr(launch, "_scontrol", scontrol)
    assert launch.slurm_allocation({}) is None
    assert launch.slurm_allocation({"SLURM_JOB_ID": "77"}) == launch.Allocation("77", "gpu07", 64)
    assert calls[0] == ("show", "job", "-o", "77")
    calls.clear()  # a batch script's own environment needs no job record
    env = {"SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_CPUS_PER_TASK": "16"}
    assert launch.slurm_allocation(env) == launch.Allocation("77", "gpu07", 16)
    assert calls == [("show", "hostnames", "gpu[07-08]")]


@pytest.mark.parametrize("nodelist, head", [("gpu[003-005,9],gpu12", "gpu003"), ("a1,b2", "a1"), ("node7", "node7"),
                                            ("n[10,2-3]", "n10"), ("x[1-2]-ib", "x1-ib")])
def test_first_host_of_a_slurm_nodelist(nodelist, head):
    assert launch.first_host(nodelist) == head


def test_lspipe_launch_cli_dry_run(capsys):
    from lspipe.cli import main

    assert main(["launch", "--gpus", "2", "--dry-run", "--", *TRAIN]) == 0
    assert shlex.split(capsys.readouterr().out) == [*RUN, "--standalone", "--nproc-per-node=2", "--no-python", *TRAIN]
    assert main(["launch", "--gpus", "4", "--nodes", "2", "--dry-run", "--", *TRAIN]) == 2  # no SLURM here
    assert "needs a SLURM allocation" in capsys.readouterr().err


def test_lspipe_launch_trains_one_model_on_two_processes(tmp_path):
    """`lspipe launch --gpus 2` really starts torchrun with two ranks of `lspipe train` (gloo on the CPU), and
    the model they train is the one-process run's with the same global batch (lspipe.engine.distributed).
    Then a requeue: the same launch with rank 1 killed (SIGKILL) once rank 0 has written the first
    checkpoint fails; launched again, it resumes from that checkpoint and ends with exactly the
    uninterrupted two-process model (bit for bit) and metrics."""
    import subprocess

    import torch

    from lspipe.cli import main
    from lspipe.core import data as D

    D.prepare("digits", "digits", tmp_path / "digits.npz", val_size=0.2, test_size=0.25)
    # 1078 training images: 16 steps an epoch, a checkpoint at the end of each, 4 epochs
    recipe = ('{"steps": 64, "batch_size": 64, "lr": 0.05, "grad_clip": 1.0, "augment": {"pad": 1, "flip": true}, '
              '"checkpoint_every": 1}')

    def train(out):
        return ["lspipe", "train", "--data", "digits.npz", "--arch", "mlp", "--recipe", recipe, "--seed", "3",
                "--objectives", '[{"kind": "ls", "alpha": 0.1}]', "--out", f"{out}/model.pt", "--metrics",
                f"{out}/metrics.csv", "--no-progress", "--device", "cpu", "--threads", "1"]

    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    # each rank notes its RANK and WORLD_SIZE, then becomes `lspipe train`
    rank_note = ["sh", "-c", 'echo "$RANK $WORLD_SIZE" >> ranks.txt && exec "$@"', "sh"]
    proc = subprocess.run([sys.executable, "-m", "lspipe", "launch", "--gpus", "2", "--", *rank_note, *train("two")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted((tmp_path / "ranks.txt").read_text().splitlines()) == ["0 2", "1 2"]
    cwd, threads = os.getcwd(), torch.get_num_threads()
    try:
        os.chdir(tmp_path)
        assert main(train("one")[1:]) == 0
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    a, b = (torch.load(tmp_path / d / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
            for d in ("one", "two"))
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5

    # the requeue: rank 1 runs `lspipe train` in the background and kills it the moment rank 0's first
    # checkpoint is complete (an atomic rename), as a node failure or preemption would
    kill_rank1 = ["sh", "-c", 'if [ "$RANK" = 1 ]; then "$@" & pid=$!; '
                  'while [ ! -e killed/model.pt.ckpt ]; do sleep 0.002; done; kill -9 $pid; wait $pid; exit 137; '
                  'else exec "$@"; fi', "sh"]
    killed = subprocess.run([sys.executable, "-m", "lspipe", "launch", "--gpus", "2", "--", *kill_rank1,
                             *train("killed")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode != 0 and not (tmp_path / "killed" / "model.pt").exists(), killed.stderr[-4000:]
    assert (tmp_path / "killed" / "model.pt.ckpt").exists()
    again = subprocess.run([sys.executable, "-m", "lspipe", "launch", "--gpus", "2", "--", *train("killed")],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    resumed = re.search(r"resumed from \S+ at step (\d+)", again.stderr)
    assert resumed and 16 <= int(resumed[1]) < 64, again.stderr[-4000:]
    c = torch.load(tmp_path / "killed" / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.equal(b[k], c[k]) for k in b), "the requeued run differs from the uninterrupted one"

    def metrics(d):  # every column but the wall time
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(open(tmp_path / d / "metrics.csv"))]
    assert metrics("killed") == metrics("two") and len(metrics("two")) == 4
    assert not (tmp_path / "killed" / "model.pt.ckpt").exists()  # removed once the model is saved


# --------------------------------------------------------------------------- the ImageNet preset
@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    from lspipe import tiny_imagenet

    root = tmp_path_factory.mktemp("tiny-imagenet")
    tiny_imagenet.main([str(root), "--train-per-class", "4", "--val-per-class", "2"])
    return root


@pytest.mark.parametrize("gpus", [8, 16])
def test_imagenet_preset_slurm_dry_run_requests_gpus_nodes_tasks(tmp_path, tiny_tree, gpus):
    """The preset plans on the slurm profile: 6 Inception-v4 trainings asking for their GPUs (8: one node,
    `--gpus=8`; 16: two nodes of 8, one task each), CPUs and a steps-scaled time, launched by `lspipe launch`;
    dumps on one GPU; Table 2, Table 3 / Fig. 2, Fig. 1 and the claims; no distillation and no MI."""
    work = make_workdir(tmp_path / "w", REPO / "config.yaml")
    proc = snakemake(work, "-n", "--workflow-profile", str(PROFILES / "slurm"), "--configfile", str(IMAGENET),
                     "--config", f"datasets={{imagenet: {{root: {tiny_tree}, val_size: 10}}}}",
                     f"resources={{gpus_per_model: {gpus}}}")
    preset = yaml.safe_load(IMAGENET.read_text())
    res, rec = preset["resources"], preset["recipes"]["inception_v4"]
    jobs = planned(proc.stdout + proc.stderr)
    training = [j for j in jobs if j["rule"] == "train_teacher"]
    assert len(training) == 6, (proc.stdout + proc.stderr)[-3000:]
    for j in training:
        r, args = j["resources"], shlex.split(j["shell"].split(">")[0])
        assert r["runtime"] == str(max(res["min_runtime"], round(rec["steps"] / 1000 * res["minutes_per_1k_steps"])))
        assert r["mem_mb"] == str(res["mem_mb"]) and r["cpus_per_task"] == str(preset["threads"] * 8)
        i = args.index("--")
        assert args[:i] == ["lspipe", "launch", "--gpus", str(gpus), "--nodes", str(gpus // 8)]
        assert args[i + 1: i + 5] == ["lspipe", "train", "--data", "results/data/imagenet.npz"]
        assert args[args.index("--arch") + 1] == "inception_v4"
        if gpus == 8:
            assert r["gpu"] == "8" and not {"nodes", "tasks", "mpi", "slurm_extra"} & set(r), r
        else:
            assert "gpu" not in r and (r["nodes"], r["tasks"], r["mpi"], r["slurm_extra"]) == (
                "2", "2", "srun", "--gpus-per-node=8"), r
    dumps = [j for j in jobs if j["rule"] == "analyse_model"]
    assert len(dumps) == 6 and all(j["resources"]["gpu"] == "1" and "nodes" not in j["resources"] for j in dumps)
    rules = {j["rule"] for j in jobs}
    assert {"accuracy_table", "calibration_table", "reliability_figure", "projections_figure", "claims"} <= rules
    assert not any(r.startswith(("train_student", "distillation", "mi_")) for r in rules), rules
    # Fig. 1: the paper's classes by WordNet id, named in the row titles
    rows = preset["projections"]["rows"]
    assert [r["classes"] for r in rows] == [["n01440764", "n02138441", "n03041632"],
                                           ["n02113624", "n02113712", "n01440764"]]
    assert "tench" in rows[0]["title"] and "toy poodle" in rows[1]["title"]


def test_workflow_refuses_a_probed_grid_on_several_gpus(tmp_path):
    """Checked when the workflow is planned (common.smk, with the layouts and batch sizes tested above), one
    line naming the keys: the MI probe records one model in one process."""
    work = make_workdir(tmp_path / "w")  # tests/tiny.yaml: teachers[0] records a probe
    proc = snakemake(work, "-n", "--config", "resources={gpus_per_model: 2}", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "teachers[0] records the MI probe" in text and "teachers[0].probe: null" in text, text[-2000:]


def test_flop_count_against_hand_computation():
    """An MLP's FLOPs by hand: 2 per multiply-add; training adds the backward's weight gradients (every
    layer) and input gradients (all but the first layer, whose input needs none)."""
    d, h, k = 3 * 8 * 8, 1200, 10
    fwd = 2 * (d * h + h * h + h * k)
    f = flops_per_image("mlp", 8, k)
    assert f["forward"] == fwd
    assert f["train"] == fwd + 2 * (d * h + h * h + h * k) + 2 * (h * h + h * k)
    # Inception-v4 at 299 px: timm's published 12.3 GMACs forward (2 FLOPs each)
    inc = flops_per_image("inception_v4", 299, 1000)
    assert inc["forward"] == pytest.approx(2 * 12.3e9, rel=0.01)


def test_imagenet_preset_gpu_hours_from_flops():
    """`lspipe bench --project` on the preset: GPU-hours = runs x steps x batch x training FLOPs per image /
    the sustained FLOP/s; wall hours per model = that / runs / its 8 GPUs."""
    cfg = yaml.safe_load(IMAGENET.read_text())
    figures = {"machine": {"gpu": "G", "cpu": None}, "settings": {"batch_size": 128}, "results": [],
               "sustained_tflops": 100}
    pr = projection.project(cfg, figures)
    (row,) = pr["rows"]
    train = flops_per_image("inception_v4", 299, 1000)["train"]
    hours = 6 * 108208 * 1024 * train / 100e12 / 3600
    assert row["rate_source"] == "flops" and row["hours"] == pytest.approx(hours)
    assert 130 < hours < 140  # 6 x 22.6 H100-hours, as the preset's header and docs/benchmarks.md say
    assert row["wall_hours_per_run"] == pytest.approx(hours / 6 / 8) and pr["total_hours"] == pytest.approx(hours)
    text = report.format_projection(pr)
    assert "from FLOPs" in text and "73.49 GFLOP per training image" in text


# --------------------------------------------------------------------------- a real SLURM (opt-in)
MULTI_GPU_SLURM = pytest.mark.skipif(
    not os.environ.get("LSPIPE_TEST_SLURM_MULTIGPU"),
    reason="opt-in (about a minute): set LSPIPE_TEST_SLURM_MULTIGPU=1 to run multi-GPU jobs on a test SLURM cluster")


@pytest.mark.slow
@pytest.mark.slurm
@MULTI_GPU_SLURM
def test_multi_gpu_jobs_on_a_real_slurm(tmp_path):
    """On the single-node test cluster (tests/slurm_cluster.py, two fake GPUs): (1) a teacher with
    gpus_per_model 2 is one job of --gpus=fakegpu:2 and 2 CPUs whose `lspipe launch` trains it on two
    torchrun processes; (2) the multi-node path as the plugin runs it (`mpi`: the command in the batch
    script, SLURM_* stripped but SLURM_JOB_ID): slurm_allocation() finds the job's node and CPUs through
    scontrol, and srun_command()'s srun + torchrun (c10d rendezvous on that node) starts two ranks that
    see the step's two GPUs. One node (of 2 CPUs) only, so (2) runs it with --nodes=1 (and two tasks of one
    CPU, the plugin's least for `mpi`)."""
    import subprocess

    from slurm_cluster import SingleNodeCluster, SlurmUnavailable, ensure_installed

    try:
        ensure_installed(install=True, timeout=300)
        cluster = SingleNodeCluster(tmp_path / "cluster", gpus=2, gpu_type="fakegpu").start(timeout=120)
    except SlurmUnavailable as err:
        pytest.skip(f"SLURM unavailable: {err}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    slurm = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "3"]
    try:
        # (1) a two-GPU teacher through profiles/slurm
        work = tmp_path / "w"
        cfg = yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())
        cfg["resources"] = {"gpus_per_job": 1, "gpu_model": "fakegpu", "gpus_per_model": 2, "gpus_per_node": 2}
        for t in cfg["teachers"]:
            t["probe"] = None
        work.mkdir()
        (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        model = "results/models/digits/smallcnn/teacher/a0_s0/model.pt"
        p = subprocess.run([sys.executable, "-m", "snakemake", model, "-s", str(REPO / "Snakefile"), "-d", str(work),
                            "--workflow-profile", str(PROFILES / "slurm"), *slurm], cwd=work, env=env,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, (p.stdout + p.stderr)[-5000:]
        (job,) = [dict(t.split("=", 1) for t in line.split() if "=" in t) for line in subprocess.run(
            ["scontrol", "show", "job", "-o"], capture_output=True, text=True).stdout.splitlines() if line.startswith("JobId=")]
        assert job["TresPerJob"] == "gres:gpu:fakegpu:2" and job["CPUs/Task"] == "2" and job["JobState"] == "COMPLETED"
        log = (work / "results/logs/train_teacher/digits/smallcnn/a0_s0.log").read_text()
        assert "torch.distributed.run --standalone --nproc-per-node=2 --no-python lspipe train" in log and (work / model).exists()

        # (2) the multi-node path's launch inside a job the plugin runs as `mpi`
        mpi = tmp_path / "mpi"
        mpi.mkdir()
        (mpi / "step.py").write_text(
            "import os\nfrom lspipe import launch\n"
            "alloc = launch.slurm_allocation()\nassert alloc is not None and alloc.cpus_per_task == 1, alloc\n"
            "cmd = launch.srun_command(['sh', '-c', 'echo $RANK $WORLD_SIZE $CUDA_VISIBLE_DEVICES >> ranks.txt'], 1, 2, alloc)\n"
            "os.execvp(cmd[0], cmd)\n")
        (mpi / "Snakefile").write_text(
            'rule step:\n    output: "done.txt"\n    resources:\n        nodes=1,\n        tasks=2,\n        mpi="srun",\n'
            '        slurm_extra="--gpus-per-node=fakegpu:2",\n        cpus_per_task=1,\n        mem_mb=1000,\n'
            '        runtime=5,\n    shell:\n        "test -z ${{SLURM_JOB_NODELIST:-}} && python step.py && touch {output}"\n')
        p = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(mpi / "Snakefile"), "-d", str(mpi), "--executor",
                            "slurm", "--jobs", "1", *slurm], cwd=mpi, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, (p.stdout + p.stderr)[-5000:]
        assert sorted((mpi / "ranks.txt").read_text().splitlines()) == ["0 2 0,1", "1 2 0,1"]
    finally:
        cluster.stop()
