"""The layout of the results folder: every path under ``results``, and what a path says.

:class:`Paths` builds every path the workflow writes (``model()``, ``dump()``, ``eval()``,
``log()``, ...); arguments are values or Snakemake wildcards (``"{dataset}"``).
:func:`parse_model_path` and :func:`parse_eval_path` read a path laid out so back (dataset,
architecture, role, run), which the readers of models and evaluations check their files against.
"""

from __future__ import annotations

import re
from typing import Sequence

_MODEL_PATH_RE = re.compile(r"(?:^|/)models/(?P<dataset>[^/]+)/(?P<arch>[^/]+)/(?P<role>teacher|student)/"
                            r"(?P<run>[^/]+)/model\.pt")
_EVAL_PATH_RE = re.compile(r"(?:^|/)eval/(?P<dataset>[^/]+)/(?P<arch>[^/]+)/(?P<role>teacher|student)/(?P<run>[^/]+)\.json")


def parse_eval_path(path) -> dict | None:
    """``{"dataset", "arch", "role", "run"}`` of a path laid out as :meth:`Paths.eval`; None otherwise."""
    text = str(path).replace("\\", "/")
    m = _EVAL_PATH_RE.search(text)
    return m.groupdict() if m and text.endswith(m.group(0)) else None


def parse_model_path(path) -> dict | None:
    """``{"dataset", "arch", "role", "run"}`` of a path laid out as :meth:`Paths.model`
    (``.../models/<dataset>/<arch>/<role>/<run>/model.pt``); None for a path of another layout."""
    m = _MODEL_PATH_RE.search(str(path).replace("\\", "/"))
    return m.groupdict() if m and str(path).replace("\\", "/").endswith(m.group(0)) else None


class Paths:
    """Every path under ``results``; arguments are values or Snakemake wildcards (``"{dataset}"``)."""

    def __init__(self, results: str, formats: Sequence[str]):
        self.results = str(results)
        self.formats = list(formats)

    def data(self, dataset):
        return f"{self.results}/data/{dataset}.npz"

    def model_dir(self, dataset, arch, role, run):
        return f"{self.results}/models/{dataset}/{arch}/{role}/{run}"

    def model(self, dataset, arch, role, run):
        return f"{self.model_dir(dataset, arch, role, run)}/model.pt"

    def metrics(self, dataset, arch, role, run):
        return f"{self.model_dir(dataset, arch, role, run)}/metrics.csv"

    def probe(self, dataset, arch, run):
        """A teacher's probe trace (a placeholder file when its grid records no probe)."""
        return f"{self.model_dir(dataset, arch, 'teacher', run)}/probe.h5"

    def dump(self, dataset, arch, role, run):
        return f"{self.results}/dumps/{dataset}/{arch}/{role}/{run}.h5"

    def eval(self, dataset, arch, role, run):
        return f"{self.results}/eval/{dataset}/{arch}/{role}/{run}.json"

    def calibration(self, dataset, arch, role, run):
        return f"{self.results}/calibration/{dataset}/{arch}/{role}/{run}.json"

    def mi_curve(self, dataset, arch, run):
        return f"{self.results}/mi/{dataset}/{arch}/{run}.csv"

    def table(self, name):
        """``tables/<name>`` (give the extension)."""
        return f"{self.results}/tables/{name}"

    def report(self, name):
        """A file directly under ``results`` (the claims report)."""
        return f"{self.results}/{name}"

    def figures(self, stem):
        """The figure ``stem`` in every configured format."""
        return [f"{self.results}/figures/{stem}.{ext}" for ext in self.formats]

    def log(self, *parts):
        """``logs/<part>/.../<last part>.log``: the rule's name first, then the job's wildcards."""
        return f"{self.results}/logs/{'/'.join(parts)}.log"

    def benchmark(self, *parts):
        """``benchmarks/<part>/.../<last part>.tsv``, as :meth:`log`."""
        return f"{self.results}/benchmarks/{'/'.join(parts)}.tsv"
