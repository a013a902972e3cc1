"""lspipe.workflow.plan: run names, path templates, multi-model jobs and final targets in one place; the
rules use its path helpers and read their inputs only through it; every experiment plugs in its plan
(lspipe.workflow.plan.EXPERIMENTS), whose construction runs the experiment's checks of the config, once."""

from __future__ import annotations

import copy
import inspect
import re
import uuid

import h5py
import pytest
import yaml
from conftest import REPO, TINY, make_workdir, snakemake

from lspipe.base import paths, runs
from lspipe.base.errors import ConfigError, DataError
from lspipe.engine.probefile import ProbeTrace, write_probe_placeholder
from lspipe.experiments import distill
from lspipe.workflow import plan
from lspipe.workflow.plan import validate


def _tiny() -> dict:
    return validate(yaml.safe_load(TINY.read_text()))


def test_run_names_are_plans_and_invert():
    assert distill.baseline_run is runs.run_name and distill.kd_run is runs.kd_run
    assert runs.run_name(0.0, 3) == "a0_s3" and runs.run_name("0.10", "1") == "a0.1_s1"
    for name in (runs.run_name(0.3, 2), runs.kd_run("smallcnn", 0.1, 4.0, 1)):
        assert distill.StudentRun.parse(name).name == name
    # the run-name template of mi_curve, filled with a run's values, gives the same name
    assert runs.RUN.format(alpha="0.3", seed=2) == runs.run_name(0.3, 2)


def test_paths_take_values_or_wildcards():
    p = paths.Paths("res", ["pdf", "png"])
    assert p.model("d", "a", "teacher", "a0_s0") == "res/models/d/a/teacher/a0_s0/model.pt"
    assert p.probe("{dataset}", "{arch}", runs.RUN) == "res/models/{dataset}/{arch}/teacher/a{alpha}_s{seed}/probe.h5"
    assert p.log("train_teacher", "d", "a", "a0_s0") == "res/logs/train_teacher/d/a/a0_s0.log"
    assert p.benchmark("claims") == "res/benchmarks/claims.tsv"
    assert p.figures("fig1") == ["res/figures/fig1.pdf", "res/figures/fig1.png"]


def test_rules_spell_no_paths_and_no_rule_choosing_regex():
    rules = sorted((REPO / "workflow" / "rules").glob("*.smk")) + [REPO / "Snakefile"]
    for smk in rules:
        text = smk.read_text()
        assert "{R}/" not in text and 'f"{config["results"]' not in text, f"{smk.name} spells a results path"
        assert "ALL_TARGETS" not in text, smk.name
        assert "(?=" not in text and "(?<" not in text, f"{smk.name}: a look-ahead/behind regex picks rules"
    # `lspipe train` is spelled once: in common.smk's train_shell
    shells = [smk.name for smk in rules for _ in re.finditer(r'"lspipe train', smk.read_text())]
    assert shells == ["common.smk"], shells


def test_every_rule_runs_the_sub_command_named_after_it():
    """One naming rule: rule `x_y` runs `lspipe x-y`; the training rules (`train_*`) run
    `lspipe train`, through common.smk's train_shell."""
    from lspipe.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    seen = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        blocks = re.split(r"^(?:local)?rule (\w+):", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            if "use rule" in body.split("\n")[0]:
                continue
            called = re.findall(r"lspipe ([a-z][a-z-]*)", body) + ["train"] * ("train_shell(" in body)
            if not called:
                continue
            seen[name] = called[0]
            assert called[0] in commands, (smk.name, name, called[0])
            if name.startswith("train_"):
                assert called[0].startswith("train"), (name, called[0])
            else:
                assert called[0] == name.replace("_", "-"), f"{smk.name}: rule {name} runs lspipe {called[0]}"
    assert len(seen) >= 15 and seen["analyse_model"] == "analyse-model"


def test_config_cross_checks_run_in_validate():
    bad = _tiny()
    bad["calibration"]["ls_alpha"] = 0.25  # not an alpha of the teacher grid: Table 3 cannot be built
    with pytest.raises(ConfigError, match="calibration.ls_alpha"):
        validate(bad)
    twice = _tiny()
    twice["distillation"] = twice["distillation"] * 2
    with pytest.raises(ConfigError, match=r"distillation\[1\].dataset"):
        validate(twice)


def test_experiments_plug_in_with_their_checks_and_targets(monkeypatch):
    """Each experiment of plan.EXPERIMENTS is a Plan attribute named by its plan class, built once with
    the Plan (its checks run then, each failing one listed), and the final targets are theirs."""
    p = plan.Plan(_tiny())
    names = [e.name for e in plan.EXPERIMENTS]
    assert len(set(names)) == len(names) >= 8
    for experiment in plan.EXPERIMENTS:
        assert isinstance(getattr(p, experiment.name), experiment)
        # the plan lives with its experiment, on floor 3
        assert inspect.getmodule(experiment).__name__.startswith("lspipe.experiments.")
    assert p.final_targets() == [t for e in plan.EXPERIMENTS for t in getattr(p, e.name).targets()]
    assert p.calibration.jsons("digits", "smallcnn") == p.calibration.all_jsons()
    assert set(p.claims.inputs()["calibrations"]) >= set(p.calibration.all_jsons())

    # two experiments' checks fail: one error lists both, and the Plan is built once per validation
    bad = _tiny()
    bad["calibration"]["ls_alpha"] = 0.25
    bad["distillation"] = bad["distillation"] * 2
    with pytest.raises(ConfigError, match=r"(?s)calibration.ls_alpha.*distillation\[1\].dataset"):
        validate(bad)
    built, original = [], plan.Plan.__init__

    def counting(self, config):
        built.append(config)
        original(self, config)

    monkeypatch.setattr(plan.Plan, "__init__", counting)
    assert isinstance(plan.build(yaml.safe_load(TINY.read_text())), plan.Plan) and len(built) == 1


def _gpus(per_model, per_node=8, probe=True):
    def change(cfg):
        cfg["resources"] = {"gpus_per_model": per_model, "gpus_per_node": per_node}
        if not probe:
            cfg["teachers"][0]["probe"] = None
    return change


def _set(path, value):
    def change(cfg):
        *keys, last = path
        node = cfg
        for k in keys:
            node = node[k]
        node[last] = value
    return change


# Configs the workflow refuses, one problem each; plan.build() must refuse every one of them too (docs/architecture.md,
# rule 6: validation starts in the plan). (name, change of tiny.yaml, a phrase of the one-line problem)
BAD_CONFIGS = [
    ("gpus-not-whole-nodes", _gpus(12, probe=False), "must fill whole nodes"),
    ("batch-not-divisible", _gpus(3, probe=False), "must divide by 3"),
    ("probe-on-several-gpus", _gpus(2), "records the MI probe"),
    ("teacher-grid-gpus", _set(("teachers", 0, "gpus_per_model"), 24), "on 24 GPUs (teachers[0].gpus_per_model)"),
    ("streamed-bundled-data", _set(("datasets", "digits", "storage"), "streaming"), "streaming needs source imagefolder"),
    ("teacher-listed-twice", _set(("teachers", 0, "objectives"), [{"kind": "ls", "alpha": 0.3}]), "listed twice"),
    ("ls-alpha-not-in-grid", _set(("calibration", "ls_alpha"), 0.25), "calibration.ls_alpha"),
    ("unknown-arch", _set(("teachers", 0, "arch"), "resnet7"), "resnet7"),
    ("data-root-missing", _set(("datasets", "digits"), {"source": "imagefolder", "root": "/nonexistent/tree"}),
     "/nonexistent/tree"),
]


@pytest.mark.slow
def test_the_plan_refuses_exactly_what_the_workflow_refuses(tmp_path):
    """The same invalid configs to plan.build() and to `snakemake -n`: both refuse every one, naming the same
    problem; the valid config both accept."""
    accepted = snakemake(make_workdir(tmp_path / "good"), "-n", check=False)
    assert accepted.returncode == 0 and isinstance(plan.build(yaml.safe_load(TINY.read_text())), plan.Plan)
    for name, change, phrase in BAD_CONFIGS:
        cfg = yaml.safe_load(TINY.read_text())
        change(cfg)
        with pytest.raises(ConfigError) as refused:
            plan.build(copy.deepcopy(cfg))
        assert phrase in str(refused.value), (name, str(refused.value))
        work = tmp_path / name
        work.mkdir()
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        proc = snakemake(work, "-n", check=False)
        assert proc.returncode != 0, f"{name}: the workflow accepts what plan.build() refuses"
        assert phrase in proc.stdout + proc.stderr, (name, (proc.stdout + proc.stderr)[-3000:])


# rules files: a global of one (NAME = ...) used by another would make the order of the includes matter
_GLOBAL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=", re.M)


def test_rule_files_read_no_other_rule_files_globals():
    files = {f.name: f.read_text() for f in (REPO / "workflow" / "rules").glob("*.smk")}
    defined = {name: set(_GLOBAL.findall(text)) for name, text in files.items()}
    for name, text in files.items():
        for other, names in defined.items():
            if other in (name, "common.smk"):  # common.smk is included first, and holds the shared helpers
                continue
            used = {g for g in names if re.search(rf"\b{g}\b", text)}
            assert not used, f"{name} reads {sorted(used)}, defined in {other}: read it through PLAN instead"
    # and no global is defined twice
    seen = {}
    for name, names in defined.items():
        for g in names:
            assert g not in seen, f"{g} is defined in {name} and {seen[g]}"
            seen[g] = name


@pytest.mark.slow
def test_include_order_does_not_matter(tmp_path):
    """The default config's DAG (a dry run) is the same with the rules files included in reverse order."""
    snakefile = (REPO / "Snakefile").read_text()
    includes = re.findall(r'^include: "workflow/rules/(?!common)[a-z_]+\.smk"\n', snakefile, re.M)
    assert len(includes) >= 10
    block = "".join(includes)
    assert block in snakefile
    reverse = REPO / f".Snakefile-reversed-{uuid.uuid4().hex}"  # beside the Snakefile: same basedir
    reverse.write_text(snakefile.replace(block, "".join(reversed(includes))))
    try:
        work = make_workdir(tmp_path / "w", REPO / "config.yaml")
        ours = snakemake(work, "-n", "-p")
        theirs = snakemake(work, "-n", "-p", "-s", str(reverse))
    finally:
        reverse.unlink()

    def commands(proc):
        return sorted(re.findall(r"^Shell command: (lspipe .*)$", proc.stdout + proc.stderr, re.M))

    assert len(commands(ours)) > 40 and commands(ours) == commands(theirs)


def _grouped(p):
    return [j for j in p.training_jobs if j.grouped]


def test_grouped_jobs_and_their_benchmarks():
    cfg = _tiny()
    cfg["teachers"][0].update(fuse=True, probe=None, seeds=[0, 1])
    cfg["distillation"][0]["seeds"] = [0]
    p = plan.Plan(validate(cfg))
    fused = [j for j in _grouped(p) if j.fuse]
    alphas = cfg["teachers"][0]["alphas"]
    assert [j.rule for j in fused] == ["train_teacher_fused_digits_smallcnn_s0", "train_teacher_fused_digits_smallcnn_s1"]
    # every objective of the grid: label smoothing at each alpha, then teachers[].objectives (tiny.yaml: one)
    objectives = [{"kind": "ls", "alpha": float(a)} for a in alphas] + cfg["teachers"][0]["objectives"]
    assert len(objectives) == len(alphas) + 1 and list(fused[1].objectives) == objectives
    assert list(fused[1].runs) == [runs.objective_run(v, 1) for v in objectives]
    assert list(fused[1].runs[:len(alphas)]) == [runs.run_name(a, 1) for a in alphas]
    # every model of a multi-model job reports that job's benchmark file; the others their own rule's
    for job in _grouped(p):
        for run in job.runs:
            bench = plan.Plan(cfg).training_benchmark(job.dataset, job.arch, job.role, run)
            assert bench == p.paths.benchmark(*job.log) and p.job(job.dataset, job.arch, job.role, run) is job
    grouped = {(j.dataset, j.arch, j.role, r) for j in _grouped(p) for r in j.runs}
    single = [m for m in p.trained_models if m not in grouped]
    assert single and all(p.training_benchmark(*m) == p.paths.benchmark(p.job(*m).rule, *m[:2], m[3]) for m in single)
    # every trained model has exactly one job, and every job's models are trained models
    assert sorted((j.dataset, j.arch, j.role, r) for j in p.training_jobs for r in j.runs) == sorted(p.trained_models)
    with pytest.raises(ConfigError, match="no teacher a0.5_s0 of digits/smallcnn"):
        p.job("digits", "smallcnn", "teacher", "a0.5_s0")


def test_a_probed_fused_grid_job_carries_the_probe():
    cfg = _tiny()
    cfg["teachers"][0]["fuse"] = True  # tiny.yaml's grid records a probe
    p = plan.Plan(validate(cfg))
    teachers = [j for j in _grouped(p) if j.role == "teacher"]
    assert teachers and all(j.fuse and j.probe == cfg["teachers"][0]["probe"] and len(j.probes) == len(j.runs)
                            for j in teachers)
    assert cfg["teachers"][0]["probe"]["classes"] == ["1", "7"]
    assert all(j.probe is None and not j.probes for j in _grouped(p) if j.role == "student")
    cfg["teachers"][0]["probe"] = None
    assert all(j.probe is None and not j.probes for j in _grouped(plan.Plan(validate(cfg))))


def test_probe_placeholder_is_refused_as_a_trace(tmp_path):
    path = tmp_path / "probe.h5"
    write_probe_placeholder(path)
    with h5py.File(path, "r") as f:
        assert "logits" not in f
    with pytest.raises(DataError, match="placeholder.*teachers\\[\\].probe"):
        ProbeTrace(path)


@pytest.mark.slow
def test_final_targets_are_what_the_run_made(tiny_run):
    cfg = validate(yaml.safe_load((tiny_run / "config.yaml").read_text()))
    targets = plan.Plan(copy.deepcopy(cfg)).final_targets()
    assert len(targets) == len(set(targets)) and any(t.endswith("claims.md") for t in targets)
    missing = [t for t in targets if not (tiny_run / t).is_file()]
    assert not missing, missing
    # every teacher job wrote its probe output: the trace for the probed grid
    for g in cfg["teachers"]:
        for a in g["alphas"]:
            for s in g["seeds"]:
                probe = tiny_run / plan.Plan(cfg).paths.probe(g["dataset"], g["arch"], runs.run_name(a, s))
                if g.get("probe"):
                    assert ProbeTrace(probe).complete
                else:
                    with pytest.raises(DataError, match="placeholder"):
                        ProbeTrace(probe)


def test_a_job_is_one_value_and_the_rules_read_it():
    """Plan.training_jobs: every trained model in exactly one job; the single jobs' rules match exactly their
    runs; a distilled student's job reads its teacher's model and carries the KD objective the config gives."""
    p = plan.Plan(_tiny())
    rules = {r.name: r for r in p.training_rules}
    assert set(rules) >= {"train_teacher", "train_student_baseline", "train_student_distilled"}
    teacher = rules["train_teacher"]
    assert teacher.options == ("probe",) and teacher.matches()["run"] == sorted(r for j in teacher.jobs for r in j.runs)
    (kd,) = rules["train_student_distilled"].jobs  # tiny.yaml: the LS teacher's student at T = 1 (the rest in lockstep)
    entry = p.distillation.entries["digits"]
    assert kd.teachers == (p.paths.model("digits", "smallcnn", "teacher", "a0.3_s0"),)
    assert kd.objectives == ({"kind": "kd", "teacher": kd.teachers[0], "T": 1.0, "beta": float(entry["beta"]),
                              "form": entry["form"]},)
    assert p.model_identity("digits", "mlp", "student", kd.runs[0])["objective"] == kd.objectives[0]
    assert rules["train_student_baseline"].jobs == () and rules["train_student_baseline"].matches()["run"] == []
    grouped = [r for r in p.training_rules if r.grouped]
    assert grouped and all(r.options == ("fuse", "expect_teachers") and len(r.jobs) == 1 for r in grouped)
    assert all(j.layout.single for j in p.training_jobs)


def test_record_objective_is_the_field_else_the_run_name():
    conf = {"kind": "confidence_penalty", "beta": 0.5}
    assert runs.record_objective({"objective": conf, "run": "a0_s0", "alpha": 0.0}) == conf
    assert runs.record_objective({"objective": '{"kind": "ls", "alpha": 0}'}) == {"kind": "ls", "alpha": 0.0}
    # an evaluation written before the field: the run name's
    assert runs.record_objective({"run": "confidence_penalty-beta0.5_s2", "alpha": 0.0}) == conf
    assert runs.record_objective({"run": "a0.3_s1", "alpha": 0.3}) == {"kind": "ls", "alpha": 0.3}
    assert runs.record_objective({"run": "elsewhere", "alpha": 0.1}) == {"kind": "ls", "alpha": 0.1}
    assert runs.record_objective({"run": "elsewhere"}) is None


def test_which_alpha_is_label_smoothing():
    assert runs.pick_ls_alpha([0, 0.3, 0.1]) == 0.1  # the smallest nonzero
    assert runs.pick_ls_alpha([0, 0.3, 0.1], 0.3) == 0.3 and runs.pick_ls_alpha([0, 0.3], 0.2) is None
    assert runs.pick_ls_alpha([0.0]) is None


@pytest.mark.slow
def test_evaluations_carry_the_objective_the_plan_trains(tiny_run):
    """The objective travels whole: each model's evaluation and calibration JSON record the objective its job got."""
    import json

    cfg = validate(yaml.safe_load((tiny_run / "config.yaml").read_text()))
    p = plan.Plan(cfg)
    for m in p.trained_models:
        want = p.model_identity(*m)["objective"]
        assert json.loads((tiny_run / p.paths.eval(*m)).read_text())["model"]["objective"] == want, m
        if m[2] == "teacher" and want["kind"] == "ls":
            assert json.loads((tiny_run / p.paths.calibration(*m)).read_text())["model"]["objective"] == want, m

