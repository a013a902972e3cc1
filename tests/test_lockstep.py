"""Lockstep students (lspipe.engine.training.train_group): students of one seed sharing a teacher train
on one batch stream with one teacher forward per batch, and end exactly as their separate runs.

References are separate runs through the ordinary code path (``lspipe.engine.training.fit`` of a
group of one, with the same objective value, and the ``lspipe train`` CLI of one objective)."""

from __future__ import annotations

import copy
import csv
import json

import pytest
import torch
import yaml

from conftest import REPO, fit_one, synthetic_data
from lspipe import cli
from lspipe.base.errors import ConfigError
from lspipe.core import data as D
from lspipe.core.losses import Objective
from lspipe.core.models import build_model, load_model
from lspipe.core.recipe import Recipe
from lspipe.engine.training import Members, train_group
from lspipe.experiments import distill
from lspipe.workflow.plan import validate

TEMPS = [1.0, 2.0, 4.0]
RECIPE = {"steps": 14, "batch_size": 32, "lr": 0.05, "lr_milestones": [10], "grad_clip": 0.1,
          "dense_weight_decay": 0.01, "augment": {"pad": 1, "flip": True}}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (conftest's one_torch_thread)."""


def _rows(path):
    return [{k: float(v) for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(path))]


def _teacher(data):
    torch.manual_seed(7)
    t = build_model("smallcnn", data)
    with torch.no_grad():
        t.classifier.weight.mul_(5.0)  # a confident, arbitrary teacher: distinct soft targets per T
    return t.eval()


def _separate(arch, data, recipe, tmp_path, values, teachers=None, seed=3):
    out = []
    for i, value in enumerate(values):
        torch.manual_seed(seed)
        m = build_model(arch, data)
        fit_one(m, data, recipe, value, teachers=teachers, seed=seed, checkpoint_path=tmp_path / f"s{i}.ckpt",
                metrics_path=tmp_path / f"s{i}.csv", progress=False)
        out.append(m)
    return out


def _kd(temps, **kw):
    return [{"kind": "kd", "teacher": "t", "T": t, **kw} for t in temps]


class _Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize("arch", ["smallcnn", "mlp"])
def test_lockstep_distilled_students_are_bit_identical_to_separate_runs(arch, tmp_path):
    """float32 on the CPU, clipping and dense weight decay on: every weight, buffer and metric equal."""
    data, recipe = synthetic_data((256, 64, 64), channels=1, classes=5), Recipe.from_dict(RECIPE)
    teacher = _Counting(_teacher(data))
    trained, summary = train_group(arch, data, recipe, Objective(_kd(TEMPS), {"t": teacher}), seed=3,
                                   checkpoint_path=tmp_path / "l.ckpt",
                                   metrics_paths=[tmp_path / f"l{i}.csv" for i in range(3)], progress=False)
    assert teacher.calls == 14  # one teacher forward per step, not one per student
    refs = _separate(arch, data, recipe, tmp_path, _kd(TEMPS), {"t": _teacher(data)})
    for i, (m, ref) in enumerate(zip(trained, refs)):
        for k, v in ref.state_dict().items():
            assert torch.equal(m.state_dict()[k], v), (i, k)
        assert _rows(tmp_path / f"l{i}.csv") == _rows(tmp_path / f"s{i}.csv")
        assert summary["final"][i]["val_loss"] == float(_rows(tmp_path / f"s{i}.csv")[-1]["val_loss"])
    # the students really differ (other T), so the equality above is not trivial
    assert not torch.equal(trained[0].state_dict()["classifier.weight"], trained[2].state_dict()["classifier.weight"])


def test_lockstep_baselines_are_bit_identical_to_separate_runs(tmp_path):
    data, recipe = synthetic_data((256, 64, 64), channels=1, classes=5), Recipe.from_dict(RECIPE)
    alphas = [0.0, 0.1, 0.3]
    values = [{"kind": "ls", "alpha": a} for a in alphas]
    trained, _ = train_group("smallcnn", data, recipe, Objective(values), seed=3, checkpoint_path=tmp_path / "l.ckpt",
                             metrics_paths=[tmp_path / f"l{i}.csv" for i in range(3)], progress=False)
    refs = _separate("smallcnn", data, recipe, tmp_path, values)
    for i, (m, ref) in enumerate(zip(trained, refs)):
        for k, v in ref.state_dict().items():
            assert torch.equal(m.state_dict()[k], v), (i, k)
        assert _rows(tmp_path / f"l{i}.csv") == _rows(tmp_path / f"s{i}.csv")


@pytest.mark.parametrize("form", ["teacher", "hinton"])
def test_fused_lockstep_students_equal_separate_runs_within_rounding(form, tmp_path):
    """Fused students (one grouped network) in float32: within 1e-5 of separate runs, as the fused teachers."""
    data = synthetic_data((256, 64, 64), channels=1, classes=5)
    recipe = Recipe.from_dict({**RECIPE, "steps": 12, "grad_clip": 0.5})
    trained, _ = train_group("smallcnn", data, recipe, Objective(_kd(TEMPS, form=form), {"t": _teacher(data)}), seed=3,
                             fuse=True, checkpoint_path=tmp_path / "f.ckpt",
                             metrics_paths=[tmp_path / f"f{i}.csv" for i in range(3)], progress=False)
    refs = _separate("smallcnn", data, recipe, tmp_path, _kd(TEMPS, form=form), {"t": _teacher(data)})
    for i, (m, ref) in enumerate(zip(trained, refs)):
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(m.state_dict()[k], v, atol=1e-5, rtol=1e-4, msg=f"student {i} {k}")
        for r, q in zip(_rows(tmp_path / f"f{i}.csv"), _rows(tmp_path / f"s{i}.csv"), strict=True):
            assert r == pytest.approx(q, rel=1e-5)


def test_members_forward_and_clipping_are_each_models():
    data = synthetic_data((256, 64, 64), channels=1, classes=5)
    models = []
    for s in (0, 1):
        torch.manual_seed(s)
        models.append(build_model("smallcnn", data))
    lock = Members(models)
    x = torch.from_numpy(data.x["train"][:16])
    out = lock(x)
    assert out.shape == (16, 2, 5)
    for g, m in enumerate(models):
        assert torch.equal(out[:, g], m(x))
    out.square().sum().backward()
    ref = [torch.nn.utils.get_total_norm([p.grad for p in m.parameters()]) for m in models]
    norms = lock.clip_grad_norm_(0.01)
    torch.testing.assert_close(norms, torch.stack(ref))
    for m in models:
        assert float(torch.nn.utils.get_total_norm([p.grad for p in m.parameters()])) == pytest.approx(0.01, rel=1e-4)


def test_train_lockstep_cli_resumes_exactly_and_writes_ordinary_models(tmp_path):
    """An interrupted lockstep job resumes to the uninterrupted result; each student's model.pt is an
    ordinary one with its separate run's metadata, and equals `lspipe train` of that student bit for bit."""
    data_path = tmp_path / "digits.npz"
    D.prepare("digits", "digits", data_path, val_size=0.2, test_size=0.25)
    recipe = json.dumps({"steps": 20, "batch_size": 64, "lr": 0.05, "grad_clip": 1.0, "augment": {"pad": 1, "flip": False}})
    teacher = tmp_path / "teacher" / "model.pt"
    common = ["--data", str(data_path), "--recipe", recipe, "--device", "cpu", "--threads", "1", "--no-progress"]
    # the teacher of seed 2, as its students' run names (kd-..._s2) say
    assert cli.main(["train", "--arch", "smallcnn", "--seed", "2", "--objectives", '[{"kind": "ls"}]', "--out", str(teacher),
                     "--metrics", str(teacher.with_name("metrics.csv")), *common]) == 0
    temps = ("1", "4")

    def run(where, *extra):
        outs = [str(where / f"kd-smallcnn-a0-T{t}_s2" / "model.pt") for t in temps]
        mets = [str(where / f"kd-smallcnn-a0-T{t}_s2" / "metrics.csv") for t in temps]
        objectives = json.dumps([{"kind": "kd", "teacher": str(teacher), "T": float(t)} for t in temps])
        argv = ["train-lockstep", "--arch", "mlp", "--seed", "2", "--role", "student", "--objectives", objectives,
                "--out", *outs, "--metrics", *mets, *common, *extra]
        return cli.main(argv), outs, mets

    assert run(tmp_path / "resumed", "--stop-after-epochs", "1")[0] == 3  # stopped, resumable (one line)
    ckpt = tmp_path / "resumed" / "kd-smallcnn-a0-T1_s2" / "model.pt.ckpt"
    assert ckpt.exists() and len(_rows(tmp_path / "resumed" / "kd-smallcnn-a0-T4_s2" / "metrics.csv")) == 1
    rc, outs, mets = run(tmp_path / "resumed")
    assert rc == 0 and not ckpt.exists()
    _, ref_outs, ref_mets = run(tmp_path / "straight")
    for i, t in enumerate(temps):
        model, meta = load_model(outs[i])
        ref, _ = load_model(ref_outs[i])
        for k, v in ref.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), k
        assert _rows(mets[i]) == _rows(ref_mets[i]) and len(_rows(mets[i])) == 2
        assert meta["run"] == f"kd-smallcnn-a0-T{t}_s2" and meta["role"] == "student" and meta["seed"] == 2
        assert (meta["temperature"], meta["beta"], meta["form"], meta["alpha"]) == (float(t), 1.0, "teacher", 0.0)
        assert meta["teacher"] == str(teacher) and meta["lockstep"] == {"runs": [f"kd-smallcnn-a0-T{u}_s2" for u in temps],
                                                                        "fused": False}
        assert meta["summary"]["final"]["step"] == 20
    # student T = 4 equals the separate `lspipe train` run of it, bit for bit (CLI to CLI)
    single = tmp_path / "single" / "model.pt"
    assert cli.main(["train", "--arch", "mlp", "--seed", "2", "--role", "student", "--objectives",
                     json.dumps([{"kind": "kd", "teacher": str(teacher), "T": 4}]), "--out", str(single),
                     "--metrics", str(single.with_name("metrics.csv")), *common]) == 0
    ref, ref_meta = load_model(single)
    member, meta = load_model(outs[1])
    for k, v in ref.state_dict().items():
        assert torch.equal(member.state_dict()[k], v), k
    assert _rows(single.with_name("metrics.csv")) == _rows(mets[1])
    same = ("dataset", "arch", "role", "alpha", "seed", "recipe", "teacher", "teacher_sha256", "teacher_alpha",
            "temperature", "beta", "form", "objective")
    assert {k: meta[k] for k in same} == {k: ref_meta[k] for k in same}


def test_train_lockstep_cli_refuses_a_mixed_or_incomplete_group(tmp_path, capsys):
    base = ["train-lockstep", "--data", "x.npz", "--arch", "mlp", "--recipe", '{"steps": 1}', "--seed", "0", "--out", "a", "b",
            "--metrics", "a", "b"]
    ls = '{"kind": "ls"}'
    for extra, message in ((["--objectives", "[]"], "--objectives must be a JSON list of objective values, got []"),
                           (["--objectives", f"[{ls}, {ls}, {ls}]"], "--out needs one value per objective (3), got 2"),
                           (["--objectives", '[{"kind": "kd", "T": 2}, {"kind": "ls"}]'],
                            r"--objectives[0]: a kd objective needs teacher"),
                           (["--objectives", f'[{ls}, {{"kind": "ls", "alpha": -1}}]'],
                            "--objectives[1].alpha must be a number in [0, 1), got -1")):
        assert cli.main(base + extra) == 2
        assert f"lspipe train-lockstep: error: {message}" in capsys.readouterr().err


# --------------------------------------------------------------------------- the plan: groups and teacher twins

ENTRY = {"dataset": "c", "teacher_arch": "resnet56", "student_arch": "alexnet", "student_recipe": "alexnet",
         "teacher_alphas": [0.0, 0.3], "baseline_alphas": None, "temperatures": [1, 2, 4], "seeds": [0, 1],
         "lockstep": True}


def test_lockstep_groups_per_seed():
    groups = distill.lockstep_groups(ENTRY)
    assert [(g["family"], g["seed"]) for g in groups] == [("kd_hard", 0), ("baseline", 0), ("kd_hard", 1), ("baseline", 1)]
    assert [r.name for r in groups[2]["runs"]] == ["kd-resnet56-a0-T1_s1", "kd-resnet56-a0-T2_s1", "kd-resnet56-a0-T4_s1"]
    assert [r.temperature for r in groups[2]["runs"]] == [1.0, 2.0, 4.0]
    assert [r.alpha for r in groups[3]["runs"]] == [0.0, 0.3]
    # every student of the grid is in at most one group; the LS teacher's students (one per seed) in none
    grouped = [r.name for g in groups for r in g["runs"]]
    assert len(grouped) == len(set(grouped)) and set(grouped) < {r.name for r in distill.student_runs(ENTRY)}
    assert distill.lockstep_groups({**ENTRY, "lockstep": False}) == []
    # a baseline trained as a teacher leaves its group; a group of one is no group
    groups = distill.lockstep_groups(ENTRY, twins={"a0_s0"})
    assert [(g["family"], g["seed"]) for g in groups] == [("kd_hard", 0), ("kd_hard", 1), ("baseline", 1)]


def test_teacher_twins_need_the_same_dataset_arch_recipe_alpha_and_seed():
    recipes = {"alexnet": {"steps": 10, "lr": 0.1}, "copy": {"steps": 10, "lr": 0.1}, "other": {"steps": 20}}
    grid = {"dataset": "c", "arch": "alexnet", "recipe": "alexnet", "alphas": [0.0, 0.1], "seeds": [0, 1, 2]}
    assert distill.teacher_twins(ENTRY, [grid], recipes) == {"a0_s0": "a0_s0", "a0_s1": "a0_s1"}
    assert distill.teacher_twins(ENTRY, [{**grid, "recipe": "copy"}], recipes) == {"a0_s0": "a0_s0", "a0_s1": "a0_s1"}
    assert distill.teacher_twins(ENTRY, [{**grid, "recipe": "other"}], recipes) == {}
    assert distill.teacher_twins(ENTRY, [{**grid, "arch": "resnet56"}], recipes) == {}
    assert distill.teacher_twins(ENTRY, [{**grid, "dataset": "d"}], recipes) == {}
    assert distill.teacher_twins(ENTRY, [{**grid, "seeds": [1]}], recipes) == {"a0_s1": "a0_s1"}
    assert distill.teacher_twins({**ENTRY, "baseline_alphas": [0.3]}, [grid], recipes) == {}


def test_config_keys_and_their_defaults():
    cfg = yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())
    cfg["distillation"][0].pop("lockstep")
    d = validate(copy.deepcopy(cfg))["distillation"][0]
    assert d["lockstep"] is True and d["fuse_students"] is False
    bad = copy.deepcopy(cfg)
    bad["distillation"][0].update(lockstep=False, fuse_students=True)
    with pytest.raises(ConfigError, match="fuse_students"):
        validate(bad)


def test_train_lockstep_cli_fused_baselines_write_ordinary_models(tmp_path):
    """--fuse: the baselines of a seed as one fused network; ordinary per-student model.pt, close to separate."""
    data_path = tmp_path / "digits.npz"
    D.prepare("digits", "digits", data_path, val_size=0.2, test_size=0.25)
    recipe = json.dumps({"steps": 8, "batch_size": 64, "lr": 0.05, "augment": {"pad": 1, "flip": False}})
    common = ["--data", str(data_path), "--recipe", recipe, "--arch", "smallcnn", "--seed", "1", "--device", "cpu",
              "--threads", "1", "--no-progress"]
    outs = [str(tmp_path / f"a{a}_s1" / "model.pt") for a in ("0", "0.2")]
    assert cli.main(["train-lockstep", *common, "--role", "student", "--objectives",
                     '[{"kind": "ls", "alpha": 0}, {"kind": "ls", "alpha": 0.2}]', "--fuse", "--out", *outs,
                     "--metrics", *[str(tmp_path / f"a{a}_s1" / "metrics.csv") for a in ("0", "0.2")]]) == 0
    single = tmp_path / "single" / "model.pt"
    assert cli.main(["train", *common, "--objectives", '[{"kind": "ls", "alpha": 0.2}]', "--role", "student", "--out", str(single),
                     "--metrics", str(single.with_name("metrics.csv"))]) == 0
    member, meta = load_model(outs[1])
    ref, ref_meta = load_model(single)
    assert meta["lockstep"] == {"runs": ["a0_s1", "a0.2_s1"], "fused": True} and meta["alpha"] == 0.2
    assert {k: meta[k] for k in ("dataset", "arch", "role", "run", "seed", "recipe")} == \
        {k: ref_meta[k] for k in ("dataset", "arch", "role", "run", "seed", "recipe")} | {"run": "a0.2_s1"}
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(member.state_dict()[k], v, atol=1e-5, rtol=1e-4, msg=k)
