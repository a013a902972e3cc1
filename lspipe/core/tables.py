"""Result tables: CSV for machines, Markdown for people, and the mean ± std every table reports.

Every quantity has one unit in every CSV, named in its column: accuracy in percent (``accuracy_pct_mean``,
``test_accuracy_pct``), the expected calibration error as a fraction (``ece_frac``, as the paper's
Table 3); the Markdown tables say the unit in their headers. The standard deviation is the sample standard deviation (ddof=1; 0 for a single seed, which
:func:`fmt_pm` writes as "1 seed: no spread" instead of ``± 0``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lspipe.base.io import write_text


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


NO_SPREAD = "1 seed: no spread"

# The units of the CSV tables, named in their columns: 2 is accuracy in percent (``_pct``) and the ECE
# as a fraction (``_frac``) in every table. A `params:` value of the table rules: a new version rewrites
# the tables of an existing results folder (nothing else).
UNITS_VERSION = 2


def fmt_pm(mean: float, std: float, digits: int, n: int | None = None) -> str:
    """``mean ± std``; with ``n == 1`` (a single seed) ``mean (1 seed: no spread)`` instead of ``± 0``."""
    if n == 1:
        return f"{mean:.{digits}f} ({NO_SPREAD})"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def write_csv(path: str | Path, rows: list[dict], fields: Sequence[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
