"""Run names: how a trained model is named in paths, and what a name says.

A run name is derived from the model's objective (a config value, :mod:`lspipe.core.losses`) and
its seed by one function, :func:`objective_run`, and read back by :func:`parse_run`:

* label smoothing ``{"kind": "ls", "alpha": a}`` (a teacher, a student baseline): ``a<alpha>_s<seed>``
  (:func:`run_name`);
* distillation from a teacher: ``kd-<teacher arch>-a<teacher alpha>-T<T>_s<seed>`` (:func:`kd_run`;
  the teacher is named by its arch and alpha, which the ``kd`` value, naming the teacher's file,
  does not carry, so the plan passes them);
* any other kind: ``<kind>-<param><value>..._s<seed>`` with the value's parameters in the order
  given, e.g. ``confidence_penalty-beta0.5_s0``.

Numbers are written by :func:`fmt`. ``mi_curve`` matches a teacher's name with the wildcard template
:data:`RUN` (its alpha and seed are the command's options); the training rules match the exact run
names of their jobs (:mod:`lspipe.workflow.jobs`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Iterable, Mapping


def fmt(x) -> str:
    """Canonical text of a number in run names and paths: 0.1 -> '0.1', 0.0 -> '0', 2.0 -> '2' (-0.0 -> '0')."""
    return f"{float(x) + 0.0:g}"  # + 0.0 turns -0.0 into 0.0


def objective_token(value: Mapping) -> str:
    """The part of a run name that names the objective ``value`` (a kind without a teacher)."""
    kind = value["kind"]
    if kind == "ls":
        return f"a{fmt(value.get('alpha', 0.0))}"
    if kind == "kd":
        raise ValueError("a distilled student's run name names its teacher: use kd_run(teacher arch, teacher alpha, T, seed)")
    if not _KIND_RE.fullmatch(kind):
        raise ValueError(f"objective kind {kind!r} cannot name a run (lower-case letters and _ only)")
    parts = [kind]
    for key, v in value.items():
        if key == "kind":
            continue
        if not _KEY_RE.fullmatch(key) or isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"objective parameter {key}={v!r} cannot be written in a run name (letters = a number)")
        parts.append(f"{key}{fmt(v)}")
    return "-".join(parts)


def objective_label(value: Mapping) -> str:
    """How tables name an objective: ``α = <alpha>`` for label smoothing (the paper's columns),
    ``<kind> <param> = <value>, ...`` for another kind (e.g. ``confidence_penalty beta = 0.5``)."""
    if value["kind"] == "ls":
        return f"α = {fmt(value.get('alpha', 0.0))}"
    return " ".join([value["kind"], ", ".join(f"{k} = {fmt(v) if isinstance(v, (int, float)) else v}"
                                              for k, v in value.items() if k != "kind")]).strip()


def record_objective(model: Mapping) -> dict | None:
    """The objective of a model's record (model metadata, a dump's attributes, the ``model`` of an evaluation or
    calibration JSON): its ``objective`` field, the value its training job got; for a record written before that
    field, the one its run name says (:func:`run_objective`, else label smoothing at its recorded ``alpha``). None
    when neither says one. Label smoothing comes back as ``{"kind": "ls", "alpha": <float>}``."""
    obj = model.get("objective")
    if isinstance(obj, str):  # JSON text (an HDF5 attribute)
        obj = json.loads(obj)
    if obj is None:
        obj = run_objective(str(model.get("run") or ""), model.get("alpha"))
    if obj is not None and obj.get("kind") == "ls":
        obj = {"kind": "ls", "alpha": float(obj.get("alpha", 0.0))}
    return obj


def pick_ls_alpha(alphas: Iterable, wanted=None) -> float | None:
    """Which alpha of a grid is "label smoothing" where it is compared with hard targets (Table 3, Fig. 1, the
    distillation teachers' projections, the claims): ``wanted`` when the grid has it, else (``wanted`` None) the
    grid's smallest nonzero alpha; None when there is none (the caller names the setting to fix)."""
    alphas = sorted({float(a) for a in alphas})
    if wanted is not None:
        return float(wanted) if any(math.isclose(a, float(wanted)) for a in alphas) else None
    nonzero = [a for a in alphas if a > 0]
    return nonzero[0] if nonzero else None


def run_objective(run: str, alpha=None) -> dict | None:
    """The objective a teacher's (or student baseline's) run name says; ``alpha`` (a model's recorded
    label smoothing) when the name says none (names of other layouts, e.g. in tests); None for a
    distilled student."""
    parsed = parse_run(run or "")
    if parsed is not None and "objective" in parsed:
        return parsed["objective"]
    if parsed is None and alpha is not None:
        return {"kind": "ls", "alpha": float(alpha)}
    return None


def objective_run(value: Mapping, seed) -> str:
    """The run name of a model trained alone (no teacher) with objective ``value`` and seed ``seed``."""
    return f"{objective_token(value)}_s{int(seed)}"


def run_name(alpha, seed) -> str:
    """A teacher's (and a student baseline's) run: ``a<alpha>_s<seed>``."""
    return objective_run({"kind": "ls", "alpha": alpha}, seed)


def kd_run(teacher_arch: str, teacher_alpha, temperature, seed) -> str:
    """A distilled student's run: ``kd-<teacher arch>-a<teacher alpha>-T<T>_s<seed>``."""
    return f"kd-{teacher_arch}-a{fmt(teacher_alpha)}-T{fmt(temperature)}_s{int(seed)}"


# the run-name template of a label-smoothed teacher (Snakemake wildcards: mi_curve)
RUN = "a{alpha}_s{seed}"

_NUMBER = r"[0-9.]+(?:e[+-]?[0-9]+)?"
_KIND_RE = re.compile(r"[a-z][a-z_]*")
_KEY_RE = re.compile(r"[A-Za-z]+")
_RUN_RE = re.compile(rf"a(?P<alpha>{_NUMBER})_s(?P<seed>[0-9]+)")
_KD_RUN_RE = re.compile(rf"kd-(?P<teacher_arch>(?:timm:)?[a-z0-9_]+)-a(?P<teacher_alpha>{_NUMBER})-T(?P<temperature>{_NUMBER})"
                        rf"_s(?P<seed>[0-9]+)")
_OTHER_RUN_RE = re.compile(rf"(?P<kind>[a-z][a-z_]*)(?P<params>(?:-[A-Za-z]+{_NUMBER})+)_s(?P<seed>[0-9]+)")
_PARAM_RE = re.compile(rf"-(?P<key>[A-Za-z]+?)(?P<value>{_NUMBER})")


def parse_run(run: str) -> dict | None:
    """What a run name says (the inverse of :func:`objective_run`, :func:`run_name` and :func:`kd_run`):
    ``{"alpha", "seed", "objective"}`` for ``a<alpha>_s<seed>``; ``{"teacher_arch", "teacher_alpha",
    "temperature", "seed"}`` for a distilled student's ``kd-...`` name; ``{"objective", "seed"}`` for
    another kind's name; None for any other name."""
    if m := _RUN_RE.fullmatch(run):
        alpha = float(m["alpha"])
        return {"alpha": alpha, "seed": int(m["seed"]), "objective": {"kind": "ls", "alpha": alpha}}
    if m := _KD_RUN_RE.fullmatch(run):
        return {"teacher_arch": m["teacher_arch"], "teacher_alpha": float(m["teacher_alpha"]),
                "temperature": float(m["temperature"]), "seed": int(m["seed"])}
    if (m := _OTHER_RUN_RE.fullmatch(run)) and m["kind"] not in ("ls", "kd"):
        params = {p["key"]: float(p["value"]) for p in _PARAM_RE.finditer(m["params"])}
        return {"objective": {"kind": m["kind"], **params}, "seed": int(m["seed"])}
    return None
