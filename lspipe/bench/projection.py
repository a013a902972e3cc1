"""Projected training wall time of a configuration from measured engine rates (``lspipe bench --project``).

The jobs priced are the plan's (:attr:`lspipe.workflow.plan.Plan.training_jobs`): the very jobs the
workflow runs, each with its models, whether they train fused or in lockstep, the teachers it reads and
its GPU layout. The configuration is validated as the workflow validates it, but no data is read
(:func:`plan_of`).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

from lspipe.core.config import validate
from lspipe.workflow.jobs import AUTO, TrainingJob
from lspipe.workflow.plan import Plan

# the root of a dataset left unset (a preset's placeholder, e.g. imagenet.yaml's `root: null`): the
# projection reads no data, and an ImageFolder tree not found here counts ImageNet's 1000 classes
UNSET_ROOT = "/nonexistent/root-not-set"


def plan_of(cfg: dict) -> Plan:
    """The plan of ``cfg`` (a config as written), validated as the workflow validates it but reading no data:
    the datasets are not inspected, and a dataset whose ``root`` is not set gets :data:`UNSET_ROOT`."""
    cfg = copy.deepcopy(cfg)
    for d in (cfg.get("datasets") or {}).values():
        if isinstance(d, dict) and d.get("source") != "digits" and not d.get("root"):
            d["root"] = UNSET_ROOT
    return Plan(validate(cfg), inspect_data=False)


def _num_classes(ds: dict) -> int:
    """Classes of a configured dataset, for the FLOP count (only the logit layer depends on it: a few
    MFLOPs of Inception-v4's 73 GFLOPs): CIFAR-100's 100, the class folders of an ImageFolder tree that
    exists here, ImageNet's 1000 for one that does not, 10 otherwise."""
    if ds.get("source") == "cifar100":
        return 100
    if ds.get("source") == "imagefolder":
        root = Path(ds["root"]) / "train" if ds.get("root") else None
        if root is not None and root.is_dir():
            return max(1, sum(1 for p in root.iterdir() if p.is_dir()))
        return 1000
    return 10


def project(cfg: dict, figures: dict) -> dict:
    """Projected training wall time of a config's training jobs from measured engine images/s, one row per
    teacher grid and per distillation entry's students.

    A job of G models of S steps at batch B processes ``G * S * B`` training images. Each job is priced
    at the best measured figure for how it trains, and the row names it (``variant``):

    * a single run: the headline (fastest) engine variant of its architecture, with the preset's
      recipe when the figures time it (``preset``);
    * a fused grid's job of G members (``teachers[].fuse``): the fused figure measured at the group
      size nearest G (``fused_sizes``, model-images/s), else the single rate times the one fused
      speed-up the figures hold (``fused``), else the single rate (said so: fused not measured);
    * students: the distillation figures (``distillation``: student-images/s of the hard teacher's
      family trained separately, in lockstep and fused, each with its teacher's forward) for the
      distilled students, the fused group rate for fused baselines (``distillation[].fuse_students``);
      without distillation figures, the single student rate plus a third of a teacher training step
      per teacher forward (forward : backward ~ 1 : 2), one forward per step of each job reading a teacher.

    Each job's warm-up (``jobs``: the time to the first step of a measured teacher and student job,
    benchmarks/gpu_jobs.py) is added once per job. Student baselines that are a teacher's training run
    (:func:`lspipe.experiments.distill.teacher_twins`) have no job: they are trained once, as teachers.
    Validation, dumps and evaluation are left out (a few % on CIFAR).

    An architecture the figures do not measure is projected from its FLOP count when the figures hold
    ``sustained_tflops`` (training FLOP/s one GPU sustains, 1e12; assumed or measured): its rate is
    ``sustained_tflops * 1e12 / flops_per_image(arch, image_size)["train"]`` images/s per GPU at the
    grid's dataset's ``image_size``. Rates are per GPU, so ``hours`` are GPU-hours; a model trained on
    N GPUs (its job's layout: ``resources.gpus_per_model``, ``teachers[].gpus_per_model``) takes
    ``hours / N`` of wall time (``wall_hours_per_run``: DDP assumed to scale linearly; auto counts as one GPU).
    """
    plan = plan_of(cfg)
    rates = _Rates(plan.config, figures)
    rows = [_teacher_row(plan, g, rates) for g in plan.config["teachers"]]
    rows += [_student_row(plan, ds, rates) for ds in plan.distillation.entries]
    known = [r["hours"] for r in rows if r["hours"] is not None]
    return {"device": figures["machine"]["gpu"] or figures["machine"]["cpu"], "rows": rows,
            "rates": {a: r["engine"]["images_per_s"] for a, r in rates.res.items() if "engine" in r},
            "sustained_tflops": rates.tflops, "flop_rates": list(rates.flop_rates.values()),
            "warmup_s": rates.warmup, "measured_batch_size": figures.get("settings", {}).get("batch_size"),
            "total_hours": sum(known) if len(known) == len(rows) else None,
            "total_wall_hours": (sum(r["wall_hours_per_run"] * r["runs"] for r in rows)
                                 if len(known) == len(rows) else None),
            "missing_archs": sorted({r["arch"] for r in rows if r["hours"] is None})}


class _Rates:
    """The rates of :func:`project`: measured (single, fused by group size, distillation), from FLOPs,
    and each job's warm-up."""

    def __init__(self, cfg: dict, figures: dict):
        self.cfg, self.res = cfg, {r["arch"]: r for r in figures["results"]}
        self.tflops, self.flop_rates = figures.get("sustained_tflops"), {}
        self.distill = figures.get("distillation") or {}
        jobs = figures.get("jobs") or {}
        self.warmup = {k: jobs[k]["first_step_s"] for k in ("teacher", "student")
                       if isinstance(jobs.get(k), dict) and jobs[k].get("first_step_s") is not None}

    def single(self, arch: str, ds_name: str | None = None) -> tuple[float | None, str]:
        """(images/s, what priced it) of one model of ``arch``."""
        from lspipe.bench.flops import flops_per_image  # torch: only when an architecture is priced from FLOPs

        r = self.res.get(arch)
        if r and "engine" in r:
            if r.get("preset"):
                return r["preset"]["images_per_s"], f"{r['preset']['variant']} (preset recipe)"
            return r["engine"]["images_per_s"], r["engine"].get("variant") or "engine"
        if not self.tflops or ds_name is None:
            return None, "not measured"
        ds = self.cfg["datasets"][ds_name]
        key = (arch, ds["image_size"])
        if key not in self.flop_rates:
            fl = flops_per_image(arch, ds["image_size"], _num_classes(ds), ds["channels"])
            self.flop_rates[key] = {"arch": arch, "image_size": ds["image_size"], "train_gflops": fl["train"] / 1e9,
                                    "forward_gflops": fl["forward"] / 1e9,
                                    "images_per_s": self.tflops * 1e12 / fl["train"]}
        return self.flop_rates[key]["images_per_s"], "flops"

    def group(self, arch: str, members: int, ds_name: str | None = None) -> tuple[float | None, str]:
        """(model-images/s, what priced it) of ``members`` models of ``arch`` trained fused."""
        rate, how = self.single(arch, ds_name)
        r = self.res.get(arch, {})
        sizes = {int(k): v for k, v in (r.get("fused_sizes") or {}).items() if int(k) > 1}
        if members > 1 and sizes:
            near = min(sizes, key=lambda s: (abs(math.log(s / members)), -s))
            f = sizes[near]
            return f["images_per_s"], f"{f.get('variant', '')} fused x{near}".strip()
        if members > 1 and r.get("fused") and rate is not None:
            f = r["fused"]
            return rate * f["speedup_vs_sequential"], f"{f.get('variant') or how} fused x{f.get('models', '?')}"
        if members > 1 and rate is not None:
            return rate, f"{how} (fused not measured: priced unfused)"
        return rate, how

    def distilled(self, d: dict, mode: str) -> float | None:
        """Student-images/s of the distillation figures in ``mode`` (teacher forward included), when they
        measure this teacher and student."""
        dd = self.distill
        if (dd.get("teacher_arch"), dd.get("student_arch")) != (d["teacher_arch"], d["student_arch"]):
            return None
        return (dd.get("modes", {}).get(mode) or {}).get("images_per_s")


def _gpus(job: TrainingJob) -> int:
    """GPUs per model of a job (``auto`` counts as one)."""
    return 1 if job.layout.gpus == AUTO else int(job.layout.gpus)


def _per_run(plan: Plan, job: TrainingJob) -> int:
    """Training images of one model of ``job``: steps x batch."""
    recipe = plan.config["recipes"][job.recipe]
    return recipe["steps"] * recipe["batch_size"]


def _teacher_row(plan: Plan, g: dict, rates: _Rates) -> dict:
    jobs = [j for j in plan.training_jobs if (j.role, j.dataset, j.arch) == ("teacher", g["dataset"], g["arch"])]
    rec = plan.config["recipes"][g["recipe"]]
    runs, sec, hows = sum(len(j.runs) for j in jobs), 0.0, []
    for j in jobs:
        n = len(j.runs)
        rate, how = rates.group(j.arch, n, j.dataset) if j.fuse else rates.single(j.arch, j.dataset)
        sec = None if rate is None or sec is None else sec + n * _per_run(plan, j) / rate
        hows.append(how)
    warm = len(jobs) * rates.warmup.get("teacher", 0.0)
    sec = None if sec is None else sec + warm
    gpus = _gpus(jobs[0])
    return {"grid": f"teachers {g['dataset']}/{g['arch']}", "arch": g["arch"], "runs": runs, "jobs": len(jobs),
            "steps": rec["steps"], "batch_size": rec["batch_size"], "images": runs * rec["steps"] * rec["batch_size"],
            "fused": bool(g["fuse"]), "variant": "; ".join(dict.fromkeys(hows)), "warmup_s": warm,
            "hours": None if sec is None else sec / 3600, "gpus_per_model": gpus,
            "wall_hours_per_run": None if sec is None else sec / 3600 / runs / gpus,
            "rate_source": None if sec is None else ("flops" if "flops" in hows else "measured")}


def _student_row(plan: Plan, ds: str, rates: _Rates) -> dict:
    d = plan.distillation.entries[ds]
    jobs = [j for j in plan.training_jobs if (j.role, j.dataset) == ("student", ds)]
    rec = plan.config["recipes"][d["student_recipe"]]
    per_run = rec["steps"] * rec["batch_size"]
    runs = sum(len(j.runs) for j in jobs)
    n_kd = sum(v["kind"] == "kd" for j in jobs for v in j.objectives)
    fuse = bool(d["fuse_students"]) and bool(d["lockstep"])
    mode = "fused" if fuse else "lockstep"
    sec, hows, singles = 0.0, [], 0
    kd_group_rate, kd_single_rate = rates.distilled(d, mode), rates.distilled(d, "separate")
    single, how = rates.single(d["student_arch"], ds)
    teacher, _ = rates.single(d["teacher_arch"], ds)
    for j in jobs:
        n = len(j.runs)
        if j.grouped and j.teachers and kd_group_rate:
            sec += n * per_run / kd_group_rate
            hows.append(f"{mode} distillation x{n}")
        elif j.grouped and j.teachers:  # no distillation figures: the student rate plus one teacher forward
            sec = None if single is None or teacher is None or sec is None else sec + n * per_run / single + \
                per_run / teacher / 3
            hows.append(f"{how} + teacher forward")
        elif j.grouped:
            rate, ghow = rates.group(d["student_arch"], n, ds) if j.fuse else (single, how)
            sec = None if rate is None or sec is None else sec + n * per_run / rate
            hows.append(ghow + (f" x{n}" if not j.fuse else ""))
        else:
            singles += 1
            if j.teachers and kd_single_rate:
                rate = kd_single_rate
            elif j.teachers:
                rate = None if single is None or teacher is None else 1.0 / (1.0 / single + 1.0 / teacher / 3)
            else:
                rate = single
            sec = None if rate is None or sec is None else sec + per_run / rate
    if singles:
        hows.append(("separate distillation" if kd_single_rate else how) + f" ({singles} single runs)")
    warm = len(jobs) * rates.warmup.get("student", 0.0)
    sec = None if sec is None else sec + warm
    gpus = _gpus(jobs[0]) if jobs else 1
    return {"grid": f"students {ds}/{d['student_arch']} (teacher {d['teacher_arch']})",
            "arch": d["student_arch"], "runs": runs, "jobs": len(jobs), "distilled_runs": n_kd,
            # one teacher forward per step of each job that reads a teacher (a lockstep job's students share it)
            "teacher_forward_runs": sum(bool(j.teachers) for j in jobs), "lockstep": bool(d["lockstep"]),
            "steps": rec["steps"], "batch_size": rec["batch_size"], "images": runs * per_run, "fused": fuse,
            "variant": "; ".join(dict.fromkeys(hows)), "warmup_s": warm,
            "hours": None if sec is None else sec / 3600, "gpus_per_model": gpus,
            "wall_hours_per_run": None if sec is None else sec / 3600 / max(runs, 1) / gpus,
            "rate_source": None if sec is None else ("flops" if how == "flops" else "measured")}
