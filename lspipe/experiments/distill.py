"""Knowledge distillation across temperatures and teacher alphas (paper Fig. 5).

Three student families are trained per ``distillation`` config entry, each over the entry's seeds,
with the same architecture (``student_arch``), recipe (``student_recipe``) and training engine
(:func:`lspipe.engine.training.fit`) as everything else; only the targets differ:

* **baseline**: the student trained alone with label smoothing alpha (run ``a{alpha}_s{seed}``);
* **kd_hard**: distilled from the hard-target teacher (alpha = 0) at each temperature T of the
  grid (run ``kd-{teacher_arch}-a0-T{T}_s{seed}``);
* **kd_ls**: distilled from each label-smoothed teacher (alpha > 0) at the entry's ``ls_temperature``,
  T = 1 as in the paper's Fig. 5 unless set (run ``kd-{teacher_arch}-a{alpha}-T1_s{seed}``); the
  MNIST toy distils both teachers at one T.

Student seed ``s`` is distilled from the teacher of seed ``s``. The loss is
:func:`lspipe.core.losses.distillation_loss`: ``(1 - beta) H(y, p) + beta s H(p_teacher(T), p_student(T_s))``
in the entry's ``form``: ``teacher`` (default: student at T_s = 1, s = 1), ``slides`` (the source
slides' formula: T_s = T, s = 1) or ``hinton`` (T_s = T, s = T^2). The form is recorded in each
student's metadata, its evaluation JSON, the Fig. 5 table (column ``form``) and the figure's title.

The x-axis of Fig. 5 is the *smoothness index* of a teacher's soft targets on the training set,
``gamma = E_x[ sum_k (1 - y_k) p_teacher_k(T) K / (K - 1) ]`` (:func:`smoothness_index`): the
probability mass off the true class, rescaled so that a label-smoothed target with alpha has
gamma = alpha and the uniform distribution has gamma = 1. It is computed from the teacher's
activation dump over the *whole* training split (the dump's ``/train_full`` logits: one forward
pass per teacher, T only rescales the logits; un-augmented images), not the capped ``train``
subset the other analyses use. The gamma CSV states the sample size (``n`` of ``train_size``
examples) and Fig. 5's title repeats it. Teachers and student baselines are placed at
gamma = alpha.

Accuracies are read from the per-model evaluation JSONs (:func:`lspipe.experiments.accuracy.evaluation`)
and reported in percent, as min / mean / max (and sample std) over seeds.

Jobs: with ``lockstep`` (default) the students of one seed sharing the hard-target teacher, and
the baselines of one seed, train in one job each (:func:`lockstep_groups`, :func:`lspipe.engine.training.train_group`);
a baseline that is the very training run of a teacher (:func:`teacher_twins`) is not trained
again: its files are the teacher's (:func:`trained_as`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lspipe.base.defaults import default
from lspipe.base.errors import ConfigError
from lspipe.base.io import read_json
from lspipe.base.runs import fmt, kd_run, parse_run
from lspipe.base.runs import run_name as baseline_run
from lspipe.core.tables import write_csv
from lspipe.engine.dumpfile import Dump

FAMILIES = ("teacher", "baseline", "kd_hard", "kd_ls")
FAMILY_LABELS = {
    "teacher": "teacher (γ = α)",
    "baseline": "student alone, LS (γ = α)",
    "kd_hard": "student ← hard-target teacher, T varied",
    "kd_ls": "student ← LS teacher, T = 1",
}
FORM_LABELS = {
    "teacher": "teacher at T, student at 1, no T²",
    "slides": "teacher and student at T, no T²",
    "hinton": "teacher and student at T, × T²",
}
GAMMA_FIELDS = ["dataset", "arch", "run", "alpha", "seed", "temperature", "split", "n", "train_size", "gamma"]
TABLE_FIELDS = [
    "dataset", "family", "teacher_arch", "student_arch", "alpha", "teacher_alpha", "temperature", "form", "split", "seeds",
    "gamma_mean", "gamma_min", "gamma_max",
    "accuracy_pct_mean", "accuracy_pct_min", "accuracy_pct_max", "accuracy_pct_std",
]

# --------------------------------------------------------------------------- run names and the plan


@dataclass(frozen=True)
class StudentRun:
    """One student run. ``teacher_arch`` is None for a baseline (trained alone with LS ``alpha``)."""

    seed: int
    alpha: float = 0.0
    teacher_arch: str | None = None
    teacher_alpha: float | None = None
    temperature: float | None = None

    @property
    def distilled(self) -> bool:
        return self.teacher_arch is not None

    @property
    def family(self) -> str:
        if not self.distilled:
            return "baseline"
        return "kd_hard" if float(self.teacher_alpha) == 0.0 else "kd_ls"

    @property
    def name(self) -> str:
        if not self.distilled:
            return baseline_run(self.alpha, self.seed)
        return kd_run(self.teacher_arch, self.teacher_alpha, self.temperature, self.seed)

    @classmethod
    def parse(cls, name: str) -> StudentRun:
        """The student run ``name`` says (:func:`lspipe.base.runs.parse_run`: the one grammar of run names)."""
        r = parse_run(name)
        if r is not None and "teacher_arch" in r:
            return cls(seed=r["seed"], teacher_arch=r["teacher_arch"], teacher_alpha=r["teacher_alpha"],
                       temperature=r["temperature"])
        if r is not None and "alpha" in r:
            return cls(seed=r["seed"], alpha=r["alpha"])
        raise ValueError(f"{name!r} is not a student run name (a<alpha>_s<seed> or kd-<arch>-a<alpha>-T<T>_s<seed>)")

    @property
    def teacher_run(self) -> str | None:
        """The run of a distilled student's teacher (the teacher of its seed at ``teacher_alpha``)."""
        return baseline_run(self.teacher_alpha, self.seed) if self.distilled else None


def objective(entry: dict, run: StudentRun, teacher: str | None = None) -> dict:
    """The objective a student run of ``entry`` trains with (:mod:`lspipe.core.losses`): label smoothing at
    its alpha, or distillation from ``teacher`` (the teacher's model.pt) at its temperature with the entry's
    ``beta`` and ``form``."""
    if not run.distilled:
        return {"kind": "ls", "alpha": float(run.alpha)}
    return {"kind": "kd", "teacher": teacher, "T": float(run.temperature), "beta": float(entry["beta"]),
            "form": entry["form"]}


def baseline_alphas(entry: dict) -> list[float]:
    alphas = entry.get("baseline_alphas")
    return list(entry["teacher_alphas"] if alphas is None else alphas)


def student_runs(entry: dict) -> list[StudentRun]:
    """Every student run of a ``distillation`` entry: baselines, hard teacher at each T, LS teachers at
    :func:`ls_temperature` (T = 1 unless set)."""
    runs = [StudentRun(seed=s, alpha=float(a)) for a in baseline_alphas(entry) for s in entry["seeds"]]
    tarch = entry["teacher_arch"]
    runs += [StudentRun(seed=s, teacher_arch=tarch, teacher_alpha=0.0, temperature=float(t))
             for t in entry["temperatures"] for s in entry["seeds"]]
    runs += [StudentRun(seed=s, teacher_arch=tarch, teacher_alpha=float(a), temperature=ls_temperature(entry))
             for a in entry["teacher_alphas"] if float(a) > 0 for s in entry["seeds"]]
    return runs


def ls_temperature(entry: dict) -> float:
    """The temperature at which an entry's label-smoothed teachers are distilled (``ls_temperature``;
    the schema's default, T = 1 as in the paper's Fig. 5, for an entry read without validation)."""
    t = entry.get("ls_temperature")
    return float(default("distillation[].ls_temperature") if t is None else t)


def teacher_twins(entry: dict, teachers: Sequence[dict], recipes: dict) -> dict[str, str]:
    """Student baselines that are the very training run of a teacher: student run -> teacher run.

    A baseline (student arch, ``student_recipe``, alpha, seed, trained alone with label smoothing)
    *is* the teacher run of a grid under ``teachers`` with the same dataset and arch, the same recipe
    (by name or identical settings), that alpha and that seed: same initialisation, batches,
    objective and steps; only the role in the metadata differs. The workflow trains it once, as
    the teacher, and points the baseline's consumers at the teacher's files (the paper preset's
    AlexNet teachers and student baselines at alpha 0). A probed grid qualifies (recording the
    probe never changes training); a fused grid's member equals its single run up to rounding.
    """
    student_recipe = recipes.get(entry["student_recipe"])
    out = {}
    for g in teachers:
        if (g["dataset"], g["arch"]) != (entry["dataset"], entry["student_arch"]):
            continue
        if g["recipe"] != entry["student_recipe"] and recipes.get(g["recipe"]) != student_recipe:
            continue
        grid = {(fmt(a), int(s)) for a in g["alphas"] for s in g["seeds"]}
        for r in student_runs(entry):
            if not r.distilled and (fmt(r.alpha), r.seed) in grid:
                out[r.name] = baseline_run(r.alpha, r.seed)  # teacher runs are named a<alpha>_s<seed> too
    return out


def trained_as(run: str, twins: dict[str, str]) -> tuple[str, str]:
    """(role, run) under which a student run's files exist: the teacher's for a twin (:func:`teacher_twins`)."""
    return ("teacher", twins[run]) if run in twins else ("student", run)


def lockstep_groups(entry: dict, twins: Iterable[str] = ()) -> list[dict]:
    """The lockstep jobs of an entry with ``lockstep: true``: students of one seed sharing batches.

    Per seed: the hard-target teacher's students at every temperature (one teacher forward per
    batch for all of them), and the student baselines not trained as a teacher (``twins``). Each
    group is ``{"family", "seed", "runs"}``, ``runs`` its :class:`StudentRun` values in ascending
    temperature or alpha (whatever the config's order: the order of a grid means nothing, and
    reordering it changes no job and retrains no student); groups of fewer than two students are
    left to the single-run jobs, as are the LS teachers' students (one per teacher and seed). Empty
    when the entry's ``lockstep`` is false.
    """
    if not entry.get("lockstep"):
        return []
    twins = set(twins)
    groups = []
    for s in entry["seeds"]:
        kd = [StudentRun(seed=int(s), teacher_arch=entry["teacher_arch"], teacher_alpha=0.0, temperature=t)
              for t in sorted(float(t) for t in entry["temperatures"])]
        baselines = [StudentRun(seed=int(s), alpha=a) for a in sorted(float(a) for a in baseline_alphas(entry))]
        for family, runs in (("kd_hard", kd), ("baseline", [r for r in baselines if r.name not in twins])):
            if len(runs) >= 2:
                groups.append({"family": family, "seed": int(s), "runs": runs})
    return groups


def teacher_alphas_needed(entry: dict) -> list[float]:
    """Teachers whose smoothness index is needed or whose accuracy is drawn: alpha 0 and ``teacher_alphas``."""
    return sorted({0.0, *map(float, entry["teacher_alphas"])})


def gamma_temperatures(entry: dict) -> list[float]:
    """Temperatures at which every teacher's smoothness index is computed (the grid, T = 1 and the
    LS teachers' :func:`ls_temperature`)."""
    return sorted({1.0, ls_temperature(entry), *map(float, entry["temperatures"])})


def teacher_curve_runs(entry: dict) -> list[tuple[float, int]]:
    """(alpha, seed) of the teachers drawn in Fig. 5 (at gamma = alpha)."""
    return [(float(a), int(s)) for a in entry["teacher_alphas"] for s in entry["seeds"]]


def gamma_teacher_runs(entry: dict) -> list[tuple[float, int]]:
    """(alpha, seed) of the teachers whose smoothness index is computed: alpha 0 and ``teacher_alphas``."""
    return [(a, int(s)) for a in teacher_alphas_needed(entry) for s in entry["seeds"]]


def entries_by_dataset(entries: Sequence[dict]) -> dict[str, dict]:
    """The ``distillation`` entries keyed by dataset; raises :class:`ConfigError` when a dataset repeats."""
    out: dict[str, dict] = {}
    index: dict[str, int] = {}
    for i, d in enumerate(entries):
        if d["dataset"] in out:
            raise ConfigError(
                f"distillation[{i}].dataset {d['dataset']!r} repeats distillation[{index[d['dataset']]}]; "
                "each dataset has one distillation grid (its figure is fig5_distillation_<dataset>): merge the two entries"
            )
        out[d["dataset"]], index[d["dataset"]] = d, i
    return out


def entry_for(by_dataset: dict[str, dict], dataset: str, student_arch: str | None = None) -> dict:
    """The entry of ``dataset``; with ``student_arch``, also check it is that entry's student."""
    if dataset not in by_dataset:
        raise ConfigError(f"no 'distillation' entry for dataset {dataset!r} in the config (have: {sorted(by_dataset)})")
    d = by_dataset[dataset]
    if student_arch is not None and student_arch != d["student_arch"]:
        raise ConfigError(f"a {student_arch!r} student was requested for {dataset!r}, but "
                          f"distillation[].student_arch is {d['student_arch']!r} there")
    return d


class DistillationPlan:
    """Fig. 5 in a configuration's workflow (``Plan.distillation``): the ``distillation`` entries by
    dataset (:func:`entries_by_dataset`, which checks them), the student baselines trained as a
    teacher (:func:`teacher_twins`), and what the gamma table and the figure of each dataset read."""

    name = "distillation"

    def __init__(self, plan):
        self._paths, self._config = plan.paths, plan.config
        self.entries = entries_by_dataset(plan.config.get("distillation", []))  # raises ConfigError
        streamed = [d for d in self.entries if (plan.config["datasets"].get(d) or {}).get("storage") == "streaming"]
        if streamed:  # a streamed dataset's dumps leave out the whole training split's logits (lspipe.engine.activations)
            raise ConfigError(
                f"distillation: gamma of Fig. 5 averages over the whole training split's logits, which a streamed "
                f"dataset's dump leaves out, but dataset {streamed[0]!r} is streamed; set "
                f"datasets.{streamed[0]}.storage: resident, or remove its distillation entry"
            )

    @cached_property
    def twins(self) -> dict[str, dict[str, str]]:
        """Per dataset: student baseline run -> the teacher run it is trained as (:func:`teacher_twins`)."""
        return {ds: teacher_twins(d, self._config["teachers"], self._config.get("recipes", {}))
                for ds, d in self.entries.items()}

    def gamma_dumps(self, dataset: str) -> list[str]:
        """Dumps of the teachers whose smoothness index the gamma table computes."""
        d = self.entries[dataset]
        return [self._paths.dump(dataset, d["teacher_arch"], "teacher", baseline_run(a, s))
                for a, s in gamma_teacher_runs(d)]

    def gamma_temperatures(self, dataset: str) -> list[float]:
        """Temperatures of the gamma table (:func:`gamma_temperatures`)."""
        return gamma_temperatures(self.entries[dataset])

    def gamma_table(self, dataset: str) -> str:
        return self._paths.table(f"distillation_gamma_{dataset}.csv")

    def teacher_evals(self, dataset: str) -> list[str]:
        """Evaluations of the teachers drawn in the figure."""
        d = self.entries[dataset]
        return [self._paths.eval(dataset, d["teacher_arch"], "teacher", baseline_run(a, s))
                for a, s in teacher_curve_runs(d)]

    def student_evals(self, dataset: str) -> list[str]:
        """Evaluations of every student run (a twin's from its teacher's files)."""
        d = self.entries[dataset]
        return [self._paths.eval(dataset, d["student_arch"], *trained_as(r.name, self.twins[dataset]))
                for r in student_runs(d)]

    def targets(self) -> list[str]:
        p = self._paths
        return [f for d in self.entries for f in
                [self.gamma_table(d), p.table(f"distillation_{d}.csv")] + p.figures(f"fig5_distillation_{d}")]


# --------------------------------------------------------------------------- smoothness index


def smoothness_index(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """``gamma = mean_x sum_k (1 - y_k) softmax(logits / T)_k * K / (K - 1)`` for one-hot ``y``.

    ``sum_k (1 - y_k) p_k`` is the probability off the true class, ``1 - p_y``; the factor
    ``K / (K - 1)`` maps a label-smoothed target with alpha to gamma = alpha (uniform: gamma = 1).
    """
    from scipy.special import log_softmax

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(f"need N x K logits and N labels (N > 0), got {logits.shape} and {labels.shape}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    k = logits.shape[1]
    log_p_true = log_softmax(logits / temperature, axis=1)[np.arange(len(labels)), labels]
    off_true = -np.expm1(log_p_true)  # 1 - p_y, accurate when p_y is close to 1
    return float(off_true.mean() * k / (k - 1))


def smoothness_table(dump_paths: Iterable[str | Path], temperatures: Sequence[float], split: str = "train") -> list[dict]:
    """Gamma of every teacher dump at every temperature (one row per dump and T).

    ``split="train"`` averages over the whole training split (:meth:`Dump.full_train`); ``n`` is
    the number of examples averaged over and ``train_size`` the size of the training split
    (``n < train_size`` only for a dump older than its ``/train_full`` group).
    """
    rows = []
    for path in dump_paths:
        dump = Dump(path)
        if dump.meta("role") != "teacher":
            raise ValueError(f"{path} is the dump of a {dump.meta('role')!r}, not of a teacher")
        if split == "train":
            logits, labels, train_size = dump.full_train()
        else:
            s = dump.split(split)
            logits, labels, train_size = s.logits, s.labels, int(dump.attrs.get("train_size", 0))
        for t in temperatures:
            rows.append({
                "dataset": dump.meta("dataset"), "arch": dump.meta("arch"), "run": dump.meta("run"),
                "alpha": float(dump.meta("alpha")), "seed": int(dump.meta("seed")), "temperature": float(t),
                "split": split, "n": int(len(labels)), "train_size": train_size,
                "gamma": smoothness_index(logits, labels, float(t)),
            })
    return rows


def gamma_sample(path: str | Path) -> str:
    """How many examples the gamma table averaged over, for Fig. 5's title."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    ns = sorted({int(r["n"]) for r in rows})
    totals = sorted({int(r.get("train_size") or 0) for r in rows})
    split = rows[0]["split"] if rows else "train"
    n = "/".join(map(str, ns))
    if split == "train" and totals and all(t > 0 for t in totals) and ns == totals:
        return f"whole training split, n = {n}"
    return f"{split} split, n = {n}" + (f" of {'/'.join(map(str, totals))}" if totals and all(totals) else "")


def read_gamma_table(path: str | Path) -> dict[tuple[str, int, str], float]:
    """(teacher alpha, seed, T) -> gamma, keys as canonical number strings."""
    out = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            out[(fmt(r["alpha"]), int(r["seed"]), fmt(r["temperature"]))] = float(r["gamma"])
    return out


# --------------------------------------------------------------------------- the table behind Fig. 5


def _stats(values: Sequence[float]) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def distillation_rows(
    teacher_evals: Iterable[dict], student_evals: Iterable[dict], gamma: dict[tuple[str, int, str], float],
    split: str = default("distillation[].split"),
) -> list[dict]:
    """Aggregate evaluation JSONs into Fig. 5's points (accuracy in %, min/mean/max over seeds).

    ``teacher_evals`` and ``student_evals`` are parsed evaluation JSONs; ``gamma`` comes from
    :func:`read_gamma_table`. A distilled student of seed s is placed at the gamma of its
    teacher (same alpha, seed s) at its T; teachers and baselines at gamma = alpha.
    """
    groups: dict[tuple, dict] = {}

    def add(key, base, acc, g):
        grp = groups.setdefault(key, {**base, "acc": [], "gamma": []})
        grp["acc"].append(100.0 * acc)
        grp["gamma"].append(g)

    dataset = teacher_arch = student_arch = None
    forms = set()
    for ev in teacher_evals:
        m = ev["model"]
        dataset, teacher_arch, a = m["dataset"], m["arch"], float(m["alpha"])
        add(("teacher", fmt(a), ""), {"family": "teacher", "alpha": a, "teacher_alpha": a, "temperature": ""},
            ev[split]["accuracy"], a)
    for ev in student_evals:
        m = ev["model"]
        dataset, student_arch = m["dataset"], m["arch"]
        run = StudentRun.parse(m["run"])
        if run.seed != int(m["seed"]):
            raise ValueError(f"student run {m['run']!r} records seed {m['seed']}")
        if not run.distilled:
            add(("baseline", fmt(run.alpha), ""), {"family": "baseline", "alpha": run.alpha, "teacher_alpha": "",
                                                    "temperature": ""}, ev[split]["accuracy"], run.alpha)
            continue
        teacher_arch = run.teacher_arch
        forms.add(m.get("form") or "teacher")  # students from before the form existed used "teacher"
        gkey = (fmt(run.teacher_alpha), run.seed, fmt(run.temperature))
        if gkey not in gamma:
            raise KeyError(f"no smoothness index for teacher alpha {gkey[0]}, seed {gkey[1]}, T {gkey[2]} "
                           f"(needed by student {m['run']!r}); is that teacher's dump in the gamma table?")
        add((run.family, fmt(run.teacher_alpha), fmt(run.temperature)),
            {"family": run.family, "alpha": "", "teacher_alpha": run.teacher_alpha, "temperature": run.temperature},
            ev[split]["accuracy"], gamma[gkey])

    if len(forms) > 1:
        raise ValueError(f"the distilled students mix distillation forms {sorted(forms)}; retrain them with one distillation[].form")
    form = forms.pop() if forms else ""
    order = {f: i for i, f in enumerate(FAMILIES)}
    rows = []
    for key in sorted(groups, key=lambda k: (order[k[0]], float(k[1]), float(k[2] or 0))):
        grp = groups[key]
        acc, gam = _stats(grp["acc"]), _stats(grp["gamma"])
        rows.append({
            "dataset": dataset, "family": grp["family"], "teacher_arch": teacher_arch, "student_arch": student_arch,
            "alpha": grp["alpha"], "teacher_alpha": grp["teacher_alpha"], "temperature": grp["temperature"],
            "form": form if grp["family"] in ("kd_hard", "kd_ls") else "", "split": split, "seeds": len(grp["acc"]),
            "gamma_mean": round(gam["mean"], 6), "gamma_min": round(gam["min"], 6), "gamma_max": round(gam["max"], 6),
            "accuracy_pct_mean": round(acc["mean"], 4), "accuracy_pct_min": round(acc["min"], 4),
            "accuracy_pct_max": round(acc["max"], 4), "accuracy_pct_std": round(acc["std"], 4),
        })
    return rows


# --------------------------------------------------------------------------- Fig. 5


def _family_label(family: str, rows: Sequence[dict]) -> str:
    """A family's legend entry; the LS teachers' students name their temperature when it is not 1."""
    temps = sorted({float(r["temperature"]) for r in rows if r.get("temperature") not in ("", None)})
    if family == "kd_ls" and temps and temps != [1.0]:
        return FAMILY_LABELS[family].replace("T = 1", "T = " + "/".join(fmt(t) for t in temps))
    return FAMILY_LABELS[family]


def plot_distillation(rows: Sequence[dict], paths: Sequence[str | Path], dpi: int = default("figures.dpi"),
                      gamma_note: str = "", scale: float = default("figures.scale")) -> None:
    """Two panels sharing the gamma axis: (a) teacher accuracy, (b) the three student families.

    Lines join the means over seeds, shaded bands span min..max over seeds; distilled students
    also carry horizontal bars spanning the min..max of their teachers' gamma over seeds.
    """
    from lspipe.core.plotting import fit, font, new_column_figure, save_figure  # matplotlib: only when a figure is drawn

    if not rows:
        raise ValueError("no rows to plot")
    fig, panels, axes = new_column_figure(2, size=(8.0, 4.0), scale=scale)
    axes[1].sharex(axes[0])
    colors = {"teacher": "C3", "baseline": "C7", "kd_hard": "C0", "kd_ls": "C2"}
    markers = {"teacher": "s", "baseline": "o", "kd_hard": "^", "kd_ls": "D"}
    for panel, ax, families in ((panels[0], axes[0], ("teacher",)), (panels[1], axes[1], ("baseline", "kd_hard", "kd_ls"))):
        for fam in families:
            pts = sorted((r for r in rows if r["family"] == fam), key=lambda r: r["gamma_mean"])
            if not pts:
                continue
            g = np.array([r["gamma_mean"] for r in pts])
            mean = np.array([r["accuracy_pct_mean"] for r in pts])
            lo, hi = np.array([r["accuracy_pct_min"] for r in pts]), np.array([r["accuracy_pct_max"] for r in pts])
            ax.plot(g, mean, marker=markers[fam], color=colors[fam], ms=4, lw=1.2,
                    label=f"{_family_label(fam, pts)} (n={max(r['seeds'] for r in pts)})")
            ax.fill_between(g, lo, hi, color=colors[fam], alpha=0.18, lw=0)
            if fam in ("kd_hard", "kd_ls"):
                gl, gh = np.array([r["gamma_min"] for r in pts]), np.array([r["gamma_max"] for r in pts])
                ax.errorbar(g, mean, xerr=[g - gl, gh - g], fmt="none", ecolor=colors[fam], elinewidth=0.8)
                for r in pts:
                    text = f"T={fmt(r['temperature'])}" if fam == "kd_hard" else f"α={fmt(r['teacher_alpha'])}" + (
                        f", T={fmt(r['temperature'])}" if r.get("temperature") not in ("", None) and float(r["temperature"]) != 1.0 else "")
                    ax.annotate(text, (r["gamma_mean"], r["accuracy_pct_mean"]), textcoords="offset points",
                                xytext=(3, 3), fontsize=font(6), color=colors[fam])
        ax.set_xlabel("smoothness index γ of the targets", fontsize=font(9))
        ax.set_ylabel(f"{rows[0]['split']} accuracy (%)", fontsize=font(9))
        panel.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=font(8))  # never over a point
    r0 = rows[0]
    tarch = next((r["teacher_arch"] for r in rows if r["teacher_arch"]), "?")
    sarch = next((r["student_arch"] for r in rows if r["student_arch"]), "?")
    axes[0].set_title(fit(f"(a) teachers: {tarch}", 3.5, 9), fontsize=font(9))
    axes[1].set_title(fit(f"(b) students: {sarch}", 3.5, 9), fontsize=font(9))
    form = next((r["form"] for r in rows if r.get("form")), "")
    details = [f"loss form: {form} ({FORM_LABELS.get(form, form)})"] if form else []
    details += [f"γ over the {gamma_note}"] if gamma_note else []
    fig.suptitle(fit(f"Distillation on {r0['dataset']} (min / mean / max over seeds)"
                     + ("\n" + "; ".join(details) if details else ""), 8.0, 9), fontsize=font(9))
    save_figure(fig, paths, dpi)


# --------------------------------------------------------------------------- CLI


def cmd_gamma(a) -> None:
    rows = smoothness_table(a.dumps, a.temperatures, split=a.split)
    write_csv(a.out, rows, GAMMA_FIELDS)
    for r in rows:
        print(f"{r['run']} T={fmt(r['temperature'])}: gamma = {r['gamma']:.4f} (n = {r['n']} of {r['train_size']})")


def cmd_figure(a) -> None:
    if a.split not in ("val", "test"):
        raise ConfigError(f"distillation[].split must be 'val' or 'test', got {a.split!r}")
    rows = distillation_rows([read_json(p) for p in a.teacher_evals], [read_json(p) for p in a.student_evals],
                             read_gamma_table(a.gamma), split=a.split)
    write_csv(a.csv, rows, TABLE_FIELDS)
    plot_distillation(rows, a.figures, dpi=a.dpi, gamma_note=gamma_sample(a.gamma), scale=a.scale)
    for r in rows:
        print(f"{r['family']:8s} alpha={r['alpha']!s:5s} teacher_alpha={r['teacher_alpha']!s:5s} T={r['temperature']!s:4s} "
              f"gamma={r['gamma_mean']:.4f} acc={r['accuracy_pct_mean']:.2f}% [{r['accuracy_pct_min']:.2f}, "
              f"{r['accuracy_pct_max']:.2f}]")


def add_cli(sub) -> None:
    s = sub.add_parser("distillation-gamma", aliases=["distill-gamma"], help="Fig. 5: smoothness index gamma of teacher dumps at temperatures T",
                       description="Fig. 5's x-axis: the smoothness index gamma of each teacher's targets at each "
                                   "temperature T, averaged over its training split, from the teachers' dumps. The "
                                   "workflow's distillation_gamma rule runs it.")
    s.add_argument("--dumps", nargs="+", required=True, help="teacher activation dumps (HDF5)")
    s.add_argument("--temperatures", nargs="+", type=float, required=True, help="distillation temperatures T")
    s.add_argument("--split", default="train", help="dump split the index is averaged over (the paper: train, the "
                   "whole training split)")
    s.add_argument("--out", required=True, help="CSV: one row per dump and temperature")
    s.set_defaults(func=cmd_gamma)

    s = sub.add_parser("distillation-figure", aliases=["distill-figure"], help="Fig. 5: accuracy against gamma for teachers and students",
                       description="Fig. 5 of the paper: accuracy against the smoothness index gamma of the teachers, "
                                   "the students trained alone with label smoothing, and the students distilled from "
                                   "each teacher. The workflow's distillation_figure rule runs it.")
    s.add_argument("--gamma", required=True, help="CSV from `lspipe distillation-gamma`")
    s.add_argument("--teacher-evals", nargs="+", required=True, help="evaluation JSONs of the teachers")
    s.add_argument("--student-evals", nargs="+", required=True,
                   help="evaluation JSONs of the students (distilled and baselines)")
    s.add_argument("--split", default=default("distillation[].split"), help="split whose accuracy is drawn: val or test")
    s.add_argument("--csv", required=True, help="the figure's numbers (CSV)")
    s.add_argument("--figures", nargs="+", required=True, help="figure paths (format from the suffix)")
    s.add_argument("--dpi", type=int, default=default("figures.dpi"), help="resolution of raster figures")
    s.add_argument("--scale", type=float, default=default("figures.scale"), help="font scale (figures.scale)")
    s.set_defaults(func=cmd_figure)
