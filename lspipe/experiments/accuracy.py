"""Accuracy: each model's evaluation (accuracy and NLL on validation and test, from its activation
dump) and Table 2 of the paper (top-1 accuracy, mean ± std over seeds, per dataset / architecture
and objective: label smoothing at each alpha, then the grids' other objectives, named by their label).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from lspipe.base.defaults import default
from lspipe.base.errors import DataError
from lspipe.base.io import read_json, write_json, write_text
from lspipe.base.paths import parse_eval_path
from lspipe.base.runs import objective_label, record_objective
from lspipe.core.tables import fmt_pm, markdown_table, mean_std, write_csv
from lspipe.engine.dumpfile import Dump


# --------------------------------------------------------------------------- evaluation


def evaluation(dump: Dump) -> dict:
    """Accuracy and NLL on the validation and test splits of a dump."""
    out = {"model": {k: dump.meta(k) for k in ("dataset", "arch", "role", "alpha", "seed", "run")}}
    if "form" in dump.attrs:  # a distilled student: its distillation form (lspipe.core.losses.FORMS)
        out["model"]["form"] = dump.meta("form")
    out["model"]["objective"] = dump.objective()  # the value its training job got (lspipe.core.losses)
    # torch's float32 cross-entropy (the engine's validation metric): the one analysis that imports torch,
    # and only here, when it runs; a numpy NLL would change the last digits of every evaluation
    import torch

    from lspipe.core.inference import evaluate_logits

    for split in ("val", "test"):
        s = dump.split(split)
        out[split] = evaluate_logits(torch.from_numpy(s.logits), torch.from_numpy(s.labels))
    return out


def cmd_evaluate(a):
    ev = evaluation(Dump(a.dump))
    write_json(a.out, ev)
    print(json.dumps(ev))


# --------------------------------------------------------------------------- Table 2


def accuracy_table(eval_paths: Sequence[str | Path], csv_path, md_path, split: str = default("accuracy_table.split"),
                   digits: int = default("accuracy_table.digits")) -> list[dict]:
    """Aggregate per-model evaluation JSONs into Table 2 (accuracy in %: columns ``accuracy_pct_*``).

    Rows are keyed by the model's objective (its evaluation's ``objective``, :func:`lspipe.base.runs.record_objective`):
    label smoothing first, by alpha (column ``alpha``: the number, as in the paper), then every other
    objective, by its label (column ``alpha``: the label, e.g. ``confidence_penalty beta = 0.5``)."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    nll: dict[tuple, list[float]] = defaultdict(list)
    seen: dict[tuple, str | Path] = {}
    for p in eval_paths:
        ev = read_json(p)
        m = check_evaluation(p, ev, split)
        objective = record_objective(m) or {"kind": "ls", "alpha": float(m["alpha"])}
        column = (0, float(objective["alpha"]), "") if objective["kind"] == "ls" else (1, 0.0, objective_label(objective))
        model = (m["dataset"], m["arch"], column, str(m["seed"]))
        if model in seen:
            raise DataError(f"{p} and {seen[model]} evaluate one model (dataset {model[0]}, arch {model[1]}, "
                            f"{objective_label(objective)}, seed {model[3]}): Table 2 would count it as two seeds; "
                            f"rebuild the misplaced one with `snakemake -f {p}`")
        seen[model] = p
        key = (m["dataset"], m["arch"], column)
        groups[key].append(100.0 * ev[split]["accuracy"])
        nll[key].append(ev[split]["nll"])
    rows, headers = [], {}
    for key in sorted(groups):
        mu, sd = mean_std(groups[key])
        nmu, nsd = mean_std(nll[key])
        kind, alpha, label = key[2]
        headers[key[2]] = f"α = {alpha:g}" if kind == 0 else label
        rows.append({"dataset": key[0], "arch": key[1], "alpha": alpha if kind == 0 else label, "split": split,
                     "seeds": len(groups[key]), "accuracy_pct_mean": round(mu, 4), "accuracy_pct_std": round(sd, 4),
                     "nll_mean": round(nmu, 5), "nll_std": round(nsd, 5), "_column": key[2]})
    write_csv(csv_path, [{k: v for k, v in r.items() if k != "_column"} for r in rows],
              [k for k in rows[0] if k != "_column"] if rows else ["dataset"])
    columns = sorted(headers)
    by_model: dict[tuple, dict] = defaultdict(dict)
    for r in rows:
        by_model[(r["dataset"], r["arch"])][r.pop("_column")] = r
    body = []
    for (ds, arch), cells in sorted(by_model.items()):
        body.append([ds, arch] + [
            fmt_pm(cells[c]["accuracy_pct_mean"], cells[c]["accuracy_pct_std"], digits, cells[c]["seeds"]) if c in cells
            else "–"
            for c in columns
        ])
    title = (f"Top-1 accuracy (%) on the {split} split, mean ± std over seeds "
             f"(paper Table 2 layout; one column per label-smoothing alpha).\n\n")
    write_text(md_path, title + markdown_table(["dataset", "arch"] + [headers[c] for c in columns], body))
    return rows


def check_evaluation(path: str | Path, ev: dict, split: str) -> dict:
    """The model record of an evaluation JSON (``lspipe evaluate``), checked against its place
    (``eval/<dataset>/<arch>/<role>/<run>.json``, :meth:`lspipe.base.paths.Paths.eval`); raises
    :class:`lspipe.base.errors.DataError` naming the file when it is not an evaluation or not of the
    model its place says."""
    m = ev.get("model") if isinstance(ev, dict) else None
    if not isinstance(m, dict) or not {"dataset", "arch", "alpha", "seed"} <= set(m) or split not in ev:
        raise DataError(f"{path} is not an evaluation with a {split!r} split (lspipe evaluate writes them); rebuild it "
                        f"with `snakemake -f {path}`")
    place = parse_eval_path(path)
    if place:
        wrong = [f"{k} {m.get(k)!r} where its place says {place[k]!r}" for k in ("dataset", "arch", "role", "run")
                 if k in m and str(m.get(k)) != place[k]]
        if wrong:
            raise DataError(f"{path} evaluates another model than its place says: it records {'; '.join(wrong)}; "
                            f"rebuild it with `snakemake -f {path}`")
    return m


# --------------------------------------------------------------------------- in the workflow's plan


class AccuracyPlan:
    """Table 2 in a configuration's workflow (``Plan.accuracy``): it reads the evaluation of every
    teacher the config trains. ``plan`` is the workflow's :class:`lspipe.workflow.plan.Plan`."""

    name = "accuracy"

    def __init__(self, plan):
        self._plan = plan

    def evals(self) -> list[str]:
        """Evaluation JSONs of every teacher (Table 2's inputs)."""
        return [self._plan.paths.eval(*m) for m in self._plan.trained_models if m[2] == "teacher"]

    def targets(self) -> list[str]:
        return [self._plan.paths.table("accuracy.csv"), self._plan.paths.table("accuracy.md")]


# --------------------------------------------------------------------------- command line


def cmd_accuracy_table(a):
    accuracy_table(a.evals, a.csv, a.md, split=a.split, digits=a.digits)
    print(Path(a.md).read_text())


def add_cli(sub) -> None:
    """``lspipe evaluate`` (accuracy and NLL of a dump) and ``lspipe accuracy-table`` (Table 2)."""
    s = sub.add_parser("evaluate", help="accuracy and NLL on val/test from a dump",
                       description="Accuracy and negative log-likelihood of one model on its validation and test "
                                   "splits, from its activation dump (`lspipe dump-activations`), as JSON.")
    s.add_argument("--dump", required=True, help="the model's activation dump (HDF5)")
    s.add_argument("--out", required=True, help="the evaluation (JSON)")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("accuracy-table", help="Table 2: accuracy mean +- std over seeds",
                       description="Table 2 of the paper: each teacher grid's accuracy at every alpha, mean and "
                                   "standard deviation over seeds, from the models' evaluation JSONs. The workflow's "
                                   "accuracy_table rule runs it.")
    s.add_argument("--evals", nargs="+", required=True, help="evaluation JSONs (`lspipe evaluate`) of the models")
    s.add_argument("--csv", required=True, help="the table as CSV")
    s.add_argument("--md", required=True, help="the table as Markdown")
    s.add_argument("--split", default=default("accuracy_table.split"), help="split reported: val or test")
    s.add_argument("--digits", type=int, default=default("accuracy_table.digits"),
                   help="decimals in the Markdown table")
    s.set_defaults(func=cmd_accuracy_table)
