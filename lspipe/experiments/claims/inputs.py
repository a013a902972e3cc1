"""What the claims report reads: the inputs a configuration names (:class:`ClaimsPlan`, ``Plan.claims``) or
those found in a results folder (:func:`discover`), their content (:func:`load_inputs`) and the grids that mix
settings (:func:`mixed_grids`)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from lspipe.base.io import read_json
from lspipe.base.runs import fmt, parse_run, pick_ls_alpha, run_name
from lspipe.experiments.claims.statistics import _close
from lspipe.experiments.claims.teacher_checks import by_grid
from lspipe.experiments.distill import StudentRun, read_gamma_table, trained_as


# --------------------------------------------------------------------------- what the report reads


def tightness_models(config: dict) -> list[tuple[str, str, float, int]]:
    """``(dataset, arch, alpha, seed)`` of the teacher dumps claim 2 needs (validated config): per
    grid with alpha 0, alpha 0, the claims' LS alpha (``claims.ls_alpha``) and, for grids drawn in
    Fig. 1, ``projections.ls_alpha``; every seed. Empty when no grid has alpha 0 and an LS alpha."""
    proj = config.get("projections", {})
    fig1 = {(r["dataset"], r["arch"]) for r in proj.get("rows", [])}
    wanted = config.get("claims", {}).get("ls_alpha")
    out = []
    for g in config["teachers"]:
        if not any(_close(a, 0.0) for a in g["alphas"]):
            continue
        alphas = {pick_ls_alpha(g["alphas"], wanted)}
        if (g["dataset"], g["arch"]) in fig1:
            alphas.add(pick_ls_alpha(g["alphas"], proj.get("ls_alpha")))
        alphas.discard(None)
        if alphas:
            out += [(g["dataset"], g["arch"], a, int(s)) for a in sorted({0.0} | alphas) for s in g["seeds"]]
    return out


def calibration_models(config: dict) -> list[tuple[str, str, float, int]]:
    """``(dataset, arch, alpha, seed)`` of the calibration JSONs claim 3 reads: every alpha and seed of
    every teacher grid with alpha 0 and a nonzero alpha (alpha* is chosen among all of them)."""
    out = []
    for g in config["teachers"]:
        alphas = sorted({float(a) for a in g["alphas"]})
        if 0.0 in alphas and any(a > 0 for a in alphas):
            out += [(g["dataset"], g["arch"], a, int(s)) for a in alphas for s in g["seeds"]]
    return out


class ClaimsPlan:
    """The claims report in a configuration's workflow (``Plan.claims``): the teacher dumps of claim 2's
    tightness table (:func:`tightness_models`) and every input of the report (:meth:`inputs`), read
    from the other experiments' plans on the workflow's :class:`lspipe.workflow.plan.Plan`."""

    name = "claims"

    def __init__(self, plan):
        self._plan = plan
        self.tightness_models = tightness_models(plan.config)

    def tightness_dumps(self) -> list[str]:
        """Teacher dumps of claim 2's tightness table (alpha 0, the compared LS alphas, every seed)."""
        return [self._plan.paths.dump(d, a, "teacher", run_name(alpha, s)) for d, a, alpha, s in self.tightness_models]

    def inputs(self) -> dict:
        """Every input of the report and its settings: what the ``claims`` rule reads and what
        ``lspipe claims --config`` reads (nothing else in the results folder)."""
        plan = self._plan
        config, p, distillation = plan.config, plan.paths, plan.distillation
        evals = [p.eval(*m) for m in plan.trained_models]
        # a student baseline trained as a teacher (lspipe.experiments.distill.teacher_twins) is read from the teacher's eval
        twins = {ds: {run: p.eval(ds, distillation.entries[ds]["student_arch"], *trained_as(run, t)) for run in t}
                 for ds, t in distillation.twins.items() if t}
        return {
            "evals": evals + sorted({path for t in twins.values() for path in t.values()} - set(evals)),
            "twins": twins,
            "calibrations": [p.calibration(d, a, "teacher", run_name(al, s)) for d, a, al, s in calibration_models(config)],
            "tightness": [p.table("tightness.csv")] if self.tightness_models else [],
            "gamma": [distillation.gamma_table(d) for d in distillation.entries],
            "mi_curves": plan.mi.all_curves(),
            "dumps": ([p.dump(d, a, "teacher", run_name(al, s)) for d, a, al, s in calibration_models(config)]
                      if config.get("claims", {}).get("bootstrap") else []),
            "settings": dict(config.get("claims", {})),
            "accuracy_split": config["accuracy_table"]["split"],
            "fig1_ls_alpha": config["projections"]["ls_alpha"],
            "fig1_rows": len(config["projections"]["rows"]),
            "distillation_split": {d: e["split"] for d, e in distillation.entries.items()},
            "toys": plan.distillation_toy.settings(),
        }

    def targets(self) -> list[str]:
        p = self._plan.paths
        return ([p.report("claims.md"), p.report("claims.json"), p.report("claims.rst"), *p.figures("claims_forest")]
                + ([p.table("tightness.csv")] if self.tightness_models else []))


# --------------------------------------------------------------------------- reading the inputs


def _read_mi_curve(path: str | Path) -> list[dict]:
    """Per-seed MI curve CSV at ``<results>/mi/<dataset>/<arch>/a<alpha>_s<seed>.csv``; the dataset
    and arch come from the path."""
    p = Path(path)
    rows = read_csv(p)
    for r in rows:
        r.setdefault("dataset", p.parent.parent.name)
        r.setdefault("arch", p.parent.name)
        r.setdefault("run", p.stem)
        r["_path"] = str(p)
    return rows


def _read_json(path) -> dict:
    d = read_json(path)
    d["_path"] = str(path)
    return d


def discover(results: str | Path) -> dict[str, list[str]]:
    """The inputs of the claims report in a results folder of the standard layout (everything found)."""
    r = Path(results)

    def glob(pattern):
        return sorted(str(p) for p in r.glob(pattern))

    return {"evals": glob("eval/*/*/*/*.json"), "calibrations": glob("calibration/*/*/teacher/*.json"),
            "tightness": glob("tables/tightness.csv"), "gamma": glob("tables/distillation_gamma_*.csv"),
            "mi_curves": glob("mi/*/*/*.csv"), "dumps": glob("dumps/*/*/teacher/*.h5")}


def _rectangle(name: str, cells: dict[tuple, set]) -> list[str]:
    """Problems of a grid whose rows (e.g. alphas) do not share one set of columns (e.g. seeds)."""
    sets = {k: frozenset(v) for k, v in cells.items()}
    if len(set(sets.values())) <= 1:
        return []
    return [f"{name}: " + "; ".join(f"{k}: seeds {sorted(v)}" for k, v in sorted(sets.items(), key=lambda kv: str(kv[0])))]


def mixed_grids(inputs: dict) -> list[str]:
    """Signs that a results folder mixes the outputs of several configurations (orphans of an
    earlier config): grids that are not a full alpha x seed rectangle, calibration or MI files
    whose alphas/seeds differ from the evaluations', students whose teacher, alpha or temperature
    the gamma table does not hold, and gamma tables without their students."""
    problems = []

    def alpha_by_seed(records):  # (dataset, arch) -> alpha -> the seeds that have it (every objective by its alpha)
        return {grid: {a: set(seeds) for a, seeds in cells.items()}
                for grid, cells in by_grid(records, cell=lambda r: float(r.get("model", r)["alpha"])).items()}

    teacher = alpha_by_seed([ev for ev in inputs["evals"] if ev["model"]["role"] == "teacher"])
    students: dict[str, list] = defaultdict(list)
    for ev in inputs["evals"]:
        m = ev["model"]
        if m["role"] != "teacher":
            students[m["dataset"]].append((StudentRun.parse(m["run"]), ev.get("_path")))
    for (ds, arch), g in sorted(teacher.items()):
        problems += _rectangle(f"teacher evaluations {ds}/{arch} (α × seed)", {f"α {a:g}": s for a, s in g.items()})
    for key, g in sorted(alpha_by_seed(inputs["calibrations"]).items()):
        if {a: frozenset(s) for a, s in g.items()} != {a: frozenset(s) for a, s in teacher.get(key, {}).items()}:
            problems.append(f"calibration files {key[0]}/{key[1]} hold α × seed {_grid_text(g)}, the teacher "
                            f"evaluations {_grid_text(teacher.get(key, {}))}")
    for (ds, arch), g in sorted(alpha_by_seed(inputs["mi_curves"]).items()):
        problems += _rectangle(f"MI curves {ds}/{arch} (α × seed)", {f"α {a:g}": s for a, s in g.items()})
        extra = {a for a in g if a not in teacher.get((ds, arch), {})}
        if extra:
            problems.append(f"MI curves {ds}/{arch} of α {sorted(extra)} have no teacher evaluation")
    for ds, table in sorted(inputs["gamma"].items()):
        runs = students.pop(ds, [])
        keys = set(table)
        kd = [(r, p) for r, p in runs if r.distilled]
        for r, path in kd:
            if (fmt(r.teacher_alpha), r.seed, fmt(r.temperature)) not in keys:
                problems.append(f"student {path or r.name}: its teacher (α {r.teacher_alpha:g}, seed {r.seed}, "
                                f"T {r.temperature:g}) is not in distillation_gamma_{ds}.csv")
        fam: dict[str, set] = defaultdict(set)
        for r, _ in runs:
            key = ("baseline α " + fmt(r.alpha) if not r.distilled else
                   f"teacher α {fmt(r.teacher_alpha)} at T {fmt(r.temperature)}")
            fam[key].add(r.seed)
        problems += _rectangle(f"students of {ds} (family × seed)", fam)
        if not kd:
            problems.append(f"distillation_gamma_{ds}.csv has no distilled students")
    for ds, runs in sorted(students.items()):
        problems.append(f"{len(runs)} student evaluation(s) of {ds} without distillation_gamma_{ds}.csv")
    return problems


def _grid_text(g: dict) -> str:
    return "{" + ", ".join(f"{a:g}: {sorted(s)}" for a, s in sorted(g.items())) + "}"


def found_text(paths: dict[str, list[str]]) -> str:
    """What a results folder holds, for the listing ``lspipe claims --results`` prints."""
    return "; ".join(f"{k}: {len(v)} file(s)" for k, v in paths.items())


# --------------------------------------------------------------------------- CLI


def load_inputs(paths: dict) -> dict:
    """The content of the report's input files (``paths`` as :func:`inputs` or :func:`discover` give them)."""
    gamma, gamma_paths = {}, {}
    for path in paths.get("gamma") or []:
        stem = Path(path).stem
        ds = stem[len("distillation_gamma_"):] if stem.startswith("distillation_gamma_") else stem
        gamma[ds], gamma_paths[ds] = read_gamma_table(path), str(path)
    tightness = []
    for path in paths.get("tightness") or []:
        tightness += [{**r, "_path": str(path)} for r in read_csv(path)]
    return {"evals": [_read_json(p) for p in paths.get("evals") or []],
            "calibrations": [_read_json(p) for p in paths.get("calibrations") or []],
            "tightness": tightness, "gamma": gamma, "gamma_paths": gamma_paths,
            "mi_curves": [r for p in paths.get("mi_curves") or [] for r in _read_mi_curve(p)]}


def read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def dump_map(paths: Iterable[str | Path]) -> dict[tuple, str]:
    """``{(dataset, arch, alpha, seed): path}`` of label-smoothing teacher dumps
    ``<results>/dumps/<dataset>/<arch>/teacher/a<alpha>_s<seed>.h5`` (other files are skipped)."""
    out = {}
    for path in paths:
        p = Path(path)
        parsed = parse_run(p.stem)
        if parsed and "alpha" in parsed and p.parent.name == "teacher":
            out[(p.parents[2].name, p.parents[1].name, float(parsed["alpha"]), int(parsed["seed"]))] = str(p)
    return out
