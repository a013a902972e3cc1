"""The experiment table: one row per trained model (teachers and students).

Read from outputs the workflow already wrote: each model's evaluation JSON (accuracy and NLL on
validation and test), its calibration JSON (ECE on test before / after temperature scaling, T
fitted on validation), the attributes of its activation dump (the training metadata: run,
recipe steps, teacher, temperature, distillation form) and the Snakemake benchmark TSV of the
job that trained it (wall-clock seconds, column ``s``). A job that trains several models at once
(a fused teacher grid) has one benchmark file for all of them: its time is reported once, on the
first of those models, and every one of them is marked ``shared by N models``.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Sequence

from lspipe.base.errors import ConfigError
from lspipe.base.io import read_json, write_text
from lspipe.base.runs import objective_label, record_objective
from lspipe.core.tables import markdown_table, write_csv
from lspipe.engine.dumpfile import Dump

FIELDS = [
    "dataset", "arch", "role", "run", "alpha", "teacher", "temperature", "form", "seed", "steps",
    "train_seconds", "train_time_shared", "val_accuracy_pct", "test_accuracy_pct", "val_nll", "test_nll",
    "ece_frac", "ece_temperature_scaled_frac", "temperature_fitted", "temperature_at_bound",
]


def benchmark_seconds(path: str | Path) -> float | None:
    """Wall-clock seconds (column ``s``, mean over repeats) of a Snakemake benchmark TSV; None if absent."""
    p = Path(path)
    if not p.exists():
        return None
    with open(p, newline="") as fh:
        vals = [float(r["s"]) for r in csv.DictReader(fh, delimiter="\t") if r.get("s") not in (None, "", "NA")]
    return sum(vals) / len(vals) if vals else None


def dump_meta(path: str | Path) -> dict:
    """The training metadata stored in a dump's ``meta`` attribute (JSON), plus its plain attributes; a
    damaged or truncated dump is one line naming it and the fix (:class:`lspipe.engine.dumpfile.Dump`)."""
    dump = Dump(path)
    attrs = {k: dump.meta(k) for k in dump.attrs}
    meta = json.loads(attrs.get("meta") or "{}")
    return {**{k: v for k, v in attrs.items() if k != "meta"}, **meta}


def distillation_form(meta: dict) -> str:
    """The distillation loss form of a student's metadata (``form`` if recorded, else from ``hinton``)."""
    if not meta.get("teacher"):
        return ""
    form = meta.get("form")
    if form:
        return str(form)
    return "hinton" if meta.get("hinton") else "teacher"


def _is_number(x) -> bool:
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def objective_column(m: dict):
    """The ``alpha`` cell of a model trained alone: its label smoothing alpha, or, for another
    objective (its evaluation's ``objective``, :func:`lspipe.base.runs.record_objective`), that objective's label."""
    objective = record_objective(m)
    if objective is None or objective["kind"] == "ls":
        return m["alpha"]
    return objective_label(objective)


def experiment_rows(evals: Sequence[dict], calibrations: Sequence[dict | None], metas: Sequence[dict],
                    benchmarks: Sequence[str | Path | None]) -> list[dict]:
    """One row per model; the four sequences are aligned (one entry per model)."""
    if not (len(evals) == len(calibrations) == len(metas) == len(benchmarks)):
        raise ValueError(f"need one evaluation, calibration, dump and benchmark per model, got {len(evals)}, "
                         f"{len(calibrations)}, {len(metas)} and {len(benchmarks)}")
    shared = Counter(str(b) for b in benchmarks if b)
    rows = []
    for ev, cal, meta, bench in zip(evals, calibrations, metas, benchmarks):
        m = ev["model"]
        teacher = ""
        if meta.get("teacher"):
            tp = Path(str(meta["teacher"]))
            teacher = f"{tp.parent.parent.parent.name}/{tp.parent.name}"  # <arch>/<run>
        steps = (meta.get("summary") or {}).get("steps") or (meta.get("recipe") or {}).get("steps")
        row = {
            "dataset": m["dataset"], "arch": m["arch"], "role": m["role"], "run": m["run"],
            "alpha": "" if meta.get("teacher") else objective_column(m), "teacher": teacher,
            "temperature": meta.get("temperature", "") if meta.get("teacher") else "",
            "form": distillation_form(meta), "seed": m["seed"], "steps": steps,
            "train_seconds": "", "train_time_shared": "", "_benchmark": str(bench) if bench else "",
            # accuracy in percent (as every table), the ECE a fraction (as the paper's Table 3): named in the column
            "val_accuracy_pct": round(100.0 * ev["val"]["accuracy"], 4),
            "test_accuracy_pct": round(100.0 * ev["test"]["accuracy"], 4),
            "val_nll": ev["val"]["nll"], "test_nll": ev["test"]["nll"],
            "ece_frac": cal["before"]["ece"] if cal else "",
            "ece_temperature_scaled_frac": cal["after"]["ece"] if cal else "",
            "temperature_fitted": cal["temperature"] if cal else "",
            # a T on the edge of the search range is a bound, not a fitted value (the NLL keeps falling)
            "temperature_at_bound": bool((cal.get("fit") or {}).get("at_bound")) if cal else "",
        }
        rows.append(row)
    order = {"teacher": 0, "student": 1}

    def num(x):  # an alpha or a temperature; another objective's label sorts after every alpha
        if x in ("", None):
            return -1.0
        return float(x) if _is_number(x) else float("inf")

    rows.sort(key=lambda r: (r["dataset"], order.get(r["role"], 2), r["arch"], r["teacher"] != "", r["teacher"],
                             num(r["alpha"]), num(r["temperature"]), int(r["seed"]), r["run"]))
    reported: set[str] = set()
    for r in rows:  # a shared job's time goes on the first of its models in the table
        key = r.pop("_benchmark")
        if not key:
            continue
        if shared[key] > 1:
            r["train_time_shared"] = f"shared by {shared[key]} models"
            if key in reported:
                continue
            reported.add(key)
        seconds = benchmark_seconds(key)
        r["train_seconds"] = "" if seconds is None else round(seconds, 2)
    return rows


def _f(x, digits: int) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and x != "" else str(x)


def experiment_markdown(rows: Sequence[dict]) -> str:
    header = ["dataset", "arch", "role", "run", "α", "teacher", "T", "form", "seed", "steps", "train time (s)",
              "val acc %", "test acc %", "test NLL", "ECE (fraction)", "ECE (TS, fraction)", "T fitted"]
    body = []
    for r in rows:
        t = _f(r["train_seconds"], 1) + (f" ({r['train_time_shared']})" if r["train_time_shared"] else "")
        if r["train_time_shared"] and r["train_seconds"] == "":
            t = f"(job {r['train_time_shared']}: time given above)"
        body.append([r["dataset"], r["arch"], r["role"], r["run"], r["alpha"], r["teacher"], r["temperature"], r["form"],
                     r["seed"], r["steps"], t, _f(r["val_accuracy_pct"], 2), _f(r["test_accuracy_pct"], 2),
                     _f(r["test_nll"], 4), _f(r["ece_frac"], 4), _f(r["ece_temperature_scaled_frac"], 4),
                     _f(r["temperature_fitted"], 3) + (" (edge of the search range)" if r["temperature_at_bound"] is True
                                                       else "")])
    title = ("One row per trained model. Accuracy and NLL from the evaluation of each model; ECE on the test split "
             "before and after temperature scaling (T fitted on the validation split); training wall time from the "
             "Snakemake benchmark of the job that trained the model (a job training several models reports its "
             "time once).\n\n")
    return title + markdown_table(header, body)


def experiment_table(evals, calibrations, dumps, benchmarks, csv_path, md_path) -> list[dict]:
    rows = experiment_rows([read_json(p) for p in evals], [read_json(p) if p else None for p in calibrations],
                           [dump_meta(p) for p in dumps], benchmarks)
    write_csv(csv_path, rows, FIELDS)
    write_text(md_path, experiment_markdown(rows))
    return rows


class ExperimentTablePlan:
    """The experiment table in a configuration's workflow (``Plan.experiment_table``): one row per
    trained model, read from its evaluation, calibration and dump and from the benchmark file of the
    job that trained it."""

    name = "experiment_table"

    def __init__(self, plan):
        self._plan = plan

    def inputs(self) -> dict[str, list[str]]:
        """``evals``, ``calibrations``, ``dumps``, ``benchmarks``: one each per trained model, in one order."""
        p, models = self._plan.paths, self._plan.trained_models
        return {"evals": [p.eval(*m) for m in models], "calibrations": [p.calibration(*m) for m in models],
                "dumps": [p.dump(*m) for m in models],
                "benchmarks": [self._plan.training_benchmark(*m) for m in models]}

    def targets(self) -> list[str]:
        return [self._plan.paths.table("experiments.csv"), self._plan.paths.table("experiments.md")]


def _cmd(a):
    n = len(a.evals)
    for name in ("calibrations", "dumps", "benchmarks"):
        if len(getattr(a, name)) != n:
            raise ConfigError(f"--{name} needs one entry per --evals entry ({n}), "
                              f"got {len(getattr(a, name))}")
    rows = experiment_table(a.evals, a.calibrations, a.dumps, a.benchmarks, a.csv, a.md)
    print(f"{len(rows)} models -> {a.csv}")


def add_cli(sub) -> None:
    s = sub.add_parser("experiments-table", aliases=["experiments"], help="the experiment table: one row per trained model",
                       description="The experiment table: one row per trained model, with its settings, accuracy, "
                                   "NLL, ECE, temperature and training time. The workflow's experiments_table rule "
                                   "runs it.")
    s.add_argument("--evals", nargs="+", required=True, help="evaluation JSON of each model")
    s.add_argument("--calibrations", nargs="+", required=True, help="calibration JSON of each model, same order")
    s.add_argument("--dumps", nargs="+", required=True, help="activation dump of each model (training metadata)")
    s.add_argument("--benchmarks", nargs="+", required=True,
                   help="benchmark TSV of the job that trained each model; the same file for models trained together")
    s.add_argument("--csv", required=True, help="the table as CSV")
    s.add_argument("--md", required=True, help="the table as Markdown")
    s.set_defaults(func=_cmd)
