"""One model on several GPUs: the training rules' SLURM requests and ``lspipe launch``.

``resources.gpus_per_model`` (per teacher grid: ``teachers[].gpus_per_model``) says how many GPUs
train one model, ``resources.gpus_per_node`` how many a node has. The plan turns the two into each
training job's layout, nodes and processes per node (:func:`lspipe.workflow.jobs.layout`, checked as
the plan is built), and into the ``resources:`` of its rule (:func:`lspipe.workflow.jobs.rule_resources`:
what the Snakemake SLURM executor plugin turns into ``sbatch`` options); :func:`command` here turns it
into the command line that starts the training processes inside the job. The training rules run
``lspipe launch <layout> -- lspipe train ...`` when a model has more than one GPU (or ``auto``), and
plain ``lspipe train ...`` otherwise, exactly as without this module.

Three cases:

* **one GPU** (``gpus_per_model: 1``, the default): ``lspipe train`` alone; the job asks for
  ``gpu=<resources.gpus_per_job>`` as always.
* **one node, N GPUs**: the job asks for ``gpu=N`` (``sbatch --gpus=N``, ``--gpus=<model>:N``);
  inside it ``python -m torch.distributed.run --standalone --nproc-per-node=N --no-python lspipe
  train ...`` starts one process per GPU (lspipe.engine.distributed: DDP, rank 0 writes).
* **M nodes of G GPUs** (``gpus_per_model`` = M x G > ``gpus_per_node`` = G): the job asks for
  ``nodes=M``, ``tasks=M`` (one task per node) and ``--gpus-per-node=G`` (through ``slurm_extra``;
  the plugin's ``gpu`` is the job's total, which SLURM need not spread evenly), and declares
  ``mpi`` so that the plugin runs the command once in the batch script instead of wrapping it in a
  one-task ``srun``. The command then starts one ``torchrun`` per node with ``srun`` (:func:`srun_command`);
  they meet at a c10d rendezvous on the job's first node (:func:`slurm_allocation`).

``auto`` (``gpus_per_model: auto``) decides on the machine that runs the job, not when the workflow
is planned (a login node has no GPUs): one process per GPU that ``torch.cuda.device_count()`` sees
there, plain ``lspipe train`` with one GPU or none. The job asks for ``gpu=<resources.gpus_per_job>``
(on SLURM the GPUs it gets; locally a GPU slot of the profile, whose default cap of one GPU job at a
time leaves the machine's GPUs to that job).

``threads`` stays the CPU threads of each training process; a multi-GPU job asks SLURM for
``threads`` x processes per node (``cpus_per_task``).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass

from lspipe.base.errors import UserError
from lspipe.workflow.jobs import AUTO, layout

PORT_BASE, PORT_SPAN = 20000, 20000  # rendezvous port: PORT_BASE + job id mod PORT_SPAN


class LaunchError(UserError, RuntimeError):
    """The training processes cannot be started here (no SLURM allocation for a multi-node model, ...)."""


# --------------------------------------------------------------------------- inside the job


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list (``gpu[003-005,9],gpu12`` -> ``gpu003``)."""
    head = re.split(r",(?![^\[]*\])", nodelist.strip(), maxsplit=1)[0]
    m = re.fullmatch(r"([^\[]*)\[([^\]]+)\](.*)", head)
    if not m:
        return head
    first = m.group(2).split(",")[0].split("-")[0]
    return f"{m.group(1)}{first}{m.group(3)}"


@dataclass(frozen=True)
class Allocation:
    """The SLURM job a multi-node model runs in: its id, its first node (the rendezvous host) and the CPUs
    of each of its tasks (one task per node)."""

    job_id: str
    head: str
    cpus_per_task: int | None


def _scontrol(*args: str) -> str:
    try:
        return subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def slurm_allocation(environ=os.environ) -> Allocation | None:
    """The SLURM job this process runs in, or None outside one.

    The Snakemake SLURM plugin's job step removes the job's ``SLURM_*`` variables except ``SLURM_JOB_ID``
    before it runs a rule's command (so that a nested ``srun`` does not inherit the batch step's
    settings), so the node list and CPUs per task come from ``scontrol show job`` when the environment
    lacks them."""
    job = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID")
    if not job:
        return None
    nodelist, cpus = environ.get("SLURM_JOB_NODELIST"), environ.get("SLURM_CPUS_PER_TASK")
    if not nodelist or not cpus:
        record = dict(tok.split("=", 1) for tok in _scontrol("show", "job", "-o", job).split() if "=" in tok)
        nodelist = nodelist or record.get("NodeList")
        cpus = cpus or record.get("CPUs/Task")
    if not nodelist or nodelist == "(null)":
        return None
    hosts = _scontrol("show", "hostnames", nodelist).split()
    return Allocation(job, hosts[0] if hosts else first_host(nodelist),
                      int(cpus) if cpus and str(cpus).isdigit() else None)


def _device_count() -> int:
    import torch

    return torch.cuda.device_count()


def srun_command(train: list[str], nodes: int, per_node: int, alloc: Allocation, python: str = sys.executable) -> list[str]:
    """One ``torchrun`` per node of ``alloc`` started by ``srun``, meeting at a c10d rendezvous on its first node.

    The step's geometry is given in full (job, nodes, one task per node, the task's CPUs, the node's GPUs, all
    of the job's memory on each node): the plugin's job step removed the ``SLURM_*`` variables from which
    ``srun`` would otherwise take it."""
    port = PORT_BASE + int(re.sub(r"\D", "", alloc.job_id) or 0) % PORT_SPAN
    step = ["srun", f"--jobid={alloc.job_id}", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
            *([f"--cpus-per-task={alloc.cpus_per_task}"] if alloc.cpus_per_task else []),
            f"--gpus-per-node={per_node}", "--mem=0", "--kill-on-bad-exit=1"]
    return [*step, python, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--nproc-per-node={per_node}",
            "--rdzv-backend=c10d", f"--rdzv-endpoint={alloc.head}:{port}", f"--rdzv-id=lspipe-{alloc.job_id}",
            "--no-python", *train]


def command(train: list[str], gpus, nodes: int = 1, *, environ=os.environ, python: str = sys.executable,
            device_count=_device_count, allocation=slurm_allocation) -> list[str]:
    """The command line that trains one model on ``gpus`` GPUs (``"auto"``: every GPU of this machine) on
    ``nodes`` nodes, ``train`` being the one-process training command (``lspipe train ...``)."""
    if not train:
        raise LaunchError("no training command after `--` (e.g. lspipe launch --gpus 8 -- lspipe train ...)")
    if gpus == AUTO:
        if nodes != 1:
            raise LaunchError("--gpus auto uses the GPUs of one machine: leave --nodes at 1")
        gpus = device_count()
        if gpus <= 1:
            return list(train)
    if nodes < 1 or gpus % nodes:
        raise LaunchError(f"--gpus {gpus} do not spread evenly over --nodes {nodes}")
    lay = layout(gpus, gpus // nodes, "--gpus")
    if lay.single:
        return list(train)
    if not lay.multi_node:
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={lay.per_node}",
                "--no-python", *train]
    alloc = allocation(environ)
    if alloc is None:
        raise LaunchError(
            f"a model on {nodes} nodes needs a SLURM allocation of them (no SLURM job here: SLURM_JOB_ID is unset): "
            f"run the workflow with the slurm profile (workflow/profiles/slurm), or set resources.gpus_per_model "
            f"to at most the GPUs of one machine (or auto)")
    return srun_command(train, nodes, lay.per_node, alloc, python)


def _gpus(text: str):
    if text == AUTO:
        return AUTO
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"--gpus must be a whole number >= 1 or 'auto', got {text!r}") from None
    if value < 1:
        raise ValueError(f"--gpus must be a whole number >= 1 or 'auto', got {text!r}")
    return value


def cmd_launch(a) -> None:
    argv = command(a.train, a.gpus, a.nodes)
    print("lspipe launch: " + shlex.join(argv), file=sys.stderr, flush=True)
    if a.dry_run:
        print(shlex.join(argv))
        return
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # the launcher becomes the training (SLURM's signals reach it directly)


def add_cli(sub) -> None:
    import argparse

    s = sub.add_parser("launch", help="train one model on several GPUs: torchrun (one node) or srun + torchrun (several)",
                       description=__doc__.split("\n\n")[0])
    s.add_argument("--gpus", type=_gpus, required=True, help="GPUs of the model in all, or 'auto': every GPU of this machine")
    s.add_argument("--nodes", type=int, default=1, help="nodes the GPUs are spread over (a SLURM allocation of them)")
    s.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    s.add_argument("train", nargs=argparse.REMAINDER, help="-- lspipe train ...")
    s.set_defaults(func=_run)


def _run(a) -> None:
    if a.train[:1] == ["--"]:
        a.train = a.train[1:]
    cmd_launch(a)
