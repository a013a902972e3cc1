"""Run names: how a trained model is named in paths, and what a name says.

A teacher (and a student baseline) is ``a<alpha>_s<seed>`` (:func:`run_name`), a distilled
student ``kd-<teacher arch>-a<teacher alpha>-T<T>_s<seed>`` (:func:`kd_run`); numbers are written
by :func:`fmt`. :func:`parse_run` reads a name back. The training rules match the same names with
the wildcard templates :data:`RUN` and :data:`KD_RUN`.
"""

from __future__ import annotations

import re


def fmt(x) -> str:
    """Canonical text of a number in run names and paths: 0.1 -> '0.1', 0.0 -> '0', 2.0 -> '2'."""
    return f"{float(x):g}"


def run_name(alpha, seed) -> str:
    """A teacher's (and a student baseline's) run: ``a<alpha>_s<seed>``."""
    return f"a{fmt(alpha)}_s{int(seed)}"


def kd_run(teacher_arch: str, teacher_alpha, temperature, seed) -> str:
    """A distilled student's run: ``kd-<teacher arch>-a<teacher alpha>-T<T>_s<seed>``."""
    return f"kd-{teacher_arch}-a{fmt(teacher_alpha)}-T{fmt(temperature)}_s{int(seed)}"


# run-name templates of the training rules (Snakemake wildcards)
RUN = "a{alpha}_s{seed}"
KD_RUN = "kd-{tarch}-a{talpha}-T{T}_s{seed}"

_NUMBER = r"[0-9.]+(?:e[+-]?[0-9]+)?"
_RUN_RE = re.compile(rf"a(?P<alpha>{_NUMBER})_s(?P<seed>[0-9]+)")
_KD_RUN_RE = re.compile(rf"kd-(?P<teacher_arch>[a-z0-9]+)-a(?P<teacher_alpha>{_NUMBER})-T(?P<temperature>{_NUMBER})"
                        rf"_s(?P<seed>[0-9]+)")


def parse_run(run: str) -> dict | None:
    """What a run name says (the inverse of :func:`run_name` and :func:`kd_run`): ``{"alpha", "seed"}``
    for ``a<alpha>_s<seed>``; ``{"teacher_arch", "teacher_alpha", "temperature", "seed"}`` for a
    distilled student's ``kd-...`` name; None for any other name."""
    if m := _RUN_RE.fullmatch(run):
        return {"alpha": float(m["alpha"]), "seed": int(m["seed"])}
    if m := _KD_RUN_RE.fullmatch(run):
        return {"teacher_arch": m["teacher_arch"], "teacher_alpha": float(m["teacher_alpha"]),
                "temperature": float(m["temperature"]), "seed": int(m["seed"])}
    return None
