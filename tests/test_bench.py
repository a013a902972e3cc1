"""`lspipe bench`: runs end to end (smoke mode, seconds) and writes well-formed figures; the projection of a
configuration's training time sums the plan's training jobs."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from lspipe import cli
from lspipe.bench import merge_figures, projection, report, settings, timing
from lspipe.core import models


@pytest.fixture
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_bench_smoke_writes_well_formed_figures(tmp_path, capsys, _restore_threads):
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--smoke", "--archs", "resnet8", "--fuse", "2", "--threads", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    m = res["machine"]
    assert m["cores"] >= 1 and m["torch"] == torch.__version__ and m["device"] == "cpu" and m["gpu"] is None
    assert isinstance(m["cpu"], str) and m["cpu"]
    s = res["settings"]
    assert s["smoke"] is True and s["archs"] == ["resnet8"] and s["batch_size"] > 0 and s["timed_steps"] > 0
    (r,) = res["results"]
    assert r["arch"] == "resnet8" and r["parameters"] == models.count_parameters(models.create("resnet8", 10, 3, 32))
    assert r["baseline"]["images_per_s"] > 0 and r["baseline"]["step_ms"] > 0
    assert r["baseline"]["config"]["precision"] == "fp32" and r["baseline"]["config"]["num_workers"] >= 1
    assert set(r["engine_variants"]) == {"fp32", "fp32+cl"}  # the CPU switches of the recipe
    for name, e in r["engine_variants"].items():
        assert e["images_per_s"] > 0 and e["ratio"] == pytest.approx(e["images_per_s"] / r["baseline"]["images_per_s"])
    head = r["engine"]
    assert head["variant"] in r["engine_variants"] and head["config"]["precision"] == "fp32"
    assert head["images_per_s"] == max(e["images_per_s"] for e in r["engine_variants"].values())
    assert r["ratio"] == pytest.approx(head["images_per_s"] / r["baseline"]["images_per_s"])
    f = r["fused"]
    assert f["models"] == 2 and f["images_per_s"] > 0 and f["speedup_vs_sequential"] > 0
    assert r["fused_sizes"]["2"]["images_per_s"] == f["images_per_s"] and r["fused_sizes"]["1"]["models"] == 1
    # per-step times of every timed step, interleaved repeats
    assert len(head["runs"]) == s["repeats"] and all(len(x["step_ms_all"]) == s["timed_steps"] for x in head["runs"])
    assert head["config"]["engine"]["cuda_graph"] is False and not r["errors"]
    printed = capsys.readouterr().out
    assert "engine / baseline" in printed and m["cpu"] in printed


def test_baseline_and_engine_feed_the_model_the_same_numbers():
    """The baseline's ToTensor + Normalize of a PIL image equals the model's own normalisation of
    the uint8 tensor the engine keeps (so both loops train the same function of the image)."""
    import torchvision.transforms as T

    x, y = timing.random_cifar(4, seed=1)
    ds = timing.CifarLikeDataset(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y,
                                T.Compose([T.ToTensor(), T.Normalize(timing.CIFAR_MEAN, timing.CIFAR_STD)]))
    model = models.create("resnet8", 10, 3, 32, timing.CIFAR_MEAN, timing.CIFAR_STD)
    for i in range(4):
        img, label = ds[i]
        assert label == y[i]
        torch.testing.assert_close(img, model.normalize(torch.from_numpy(x[i : i + 1]))[0], atol=1e-5, rtol=1e-5)


def test_engine_variants_per_device():
    cpu = settings.engine_variants(torch.device("cpu"), False, None, cpu_bf16=True)
    assert cpu["fp32"] == {"cpu_amp": False, "cpu_channels_last": False}
    assert cpu["bf16+cl"] == {"cpu_amp": True, "cpu_channels_last": True}
    cuda = settings.engine_variants(torch.device("cuda"), True, "reduce-overhead", cpu_bf16=False)
    assert cuda == {"bf16+cl+compile": {"precision": "bf16", "channels_last": True, "cuda_graph": False,
                                        "compile": True, "compile_mode": "reduce-overhead"}}
    eager = settings.engine_variants(torch.device("cuda"), False, None, cpu_bf16=False)
    assert {"fp32", "fp32+cl", "bf16", "bf16+cl", "bf16+cl+graph"} <= set(eager)
    assert eager["bf16+cl+graph"]["cuda_graph"] == "auto" and eager["bf16+cl"]["cuda_graph"] is False
    assert list(settings.engine_variants(torch.device("cuda"), False, None, False, ["bf16+cl"])) == ["bf16+cl"]
    with pytest.raises(ValueError, match="unknown engine variant"):
        settings.engine_variants(torch.device("cpu"), False, None, False, ["bf16+cl+graph"])


def test_projection_takes_the_fused_figure_at_the_grids_group_size_the_distillation_figures_and_warm_up():
    """The issue's findings: a fused grid is priced at the fused figure measured nearest its group size (not
    unfused), lockstep and fused students at the distillation figures (not the single rate), each job's
    warm-up is added, and each row says what priced it."""
    figures = {"machine": {"gpu": "G", "cpu": "C"}, "settings": {"batch_size": 128}, "results": [
        {"arch": "resnet56", "engine": {"images_per_s": 1000.0, "variant": "bf16+cl+graph"},
         "fused_sizes": {"1": {"images_per_s": 1000.0}, "7": {"images_per_s": 5000.0, "variant": "bf16+cl+graph"},
                         "21": {"images_per_s": 8000.0, "variant": "bf16+cl+graph"}}},
        {"arch": "alexnet", "engine": {"images_per_s": 4000.0, "variant": "bf16+cl"},
         "preset": {"images_per_s": 3000.0, "variant": "bf16+cl"},
         "fused_sizes": {"7": {"images_per_s": 12000.0, "variant": "bf16+cl"}}}],
        "distillation": {"teacher_arch": "resnet56", "student_arch": "alexnet",
                         "modes": {"separate": {"images_per_s": 2000.0}, "lockstep": {"images_per_s": 3000.0},
                                   "fused": {"images_per_s": 9000.0}}},
        "jobs": {"teacher": {"first_step_s": 10.0}, "student": {"first_step_s": 5.0}}}
    cfg = {
        "datasets": {"c": {"source": "cifar10"}},  # no data is read: the root may be left unset
        "recipes": {"r": {"steps": 100}, "a": {"steps": 50}},
        "teachers": [
            {"dataset": "c", "arch": "resnet56", "recipe": "r", "alphas": [0, .1, .2, .3, .4, .5, .6, .7],
             "seeds": [0, 1], "fuse": True},
            {"dataset": "c", "arch": "alexnet", "recipe": "a", "alphas": [0], "seeds": [0]},
        ],
        "distillation": [{"dataset": "c", "teacher_arch": "resnet56", "student_arch": "alexnet", "student_recipe": "a",
                          "teacher_alphas": [0, 0.3], "baseline_alphas": [0, 0.3, 0.6], "temperatures": [1, 2, 4],
                          "seeds": [0], "lockstep": True, "fuse_students": True}],
    }
    pr = projection.project(cfg, figures)
    t, a, s = pr["rows"]
    # 8 members per seed: nearest measured size 7 (5,000 model-images/s); 2 jobs (one per seed) of 10 s warm-up
    assert t["jobs"] == 2 and "fused x7" in t["variant"]
    assert t["hours"] * 3600 == pytest.approx(16 * 100 * 128 / 5000 + 2 * 10)
    assert a["hours"] * 3600 == pytest.approx(50 * 128 / 3000 + 10) and "preset" in a["variant"]
    # students: the hard teacher's 3 (fused distillation), baselines 0.3 and 0.6 fused (alpha 0 is the
    # AlexNet teacher's run), the LS teacher's student at T = 1 alone (separate distillation); 3 jobs
    per = 50 * 128
    assert s["runs"] == 6 and s["jobs"] == 3
    assert s["hours"] * 3600 == pytest.approx(3 * per / 9000 + 2 * per / 12000 + per / 2000 + 3 * 5)
    assert "fused distillation x3" in s["variant"] and "fused x7" in s["variant"]
    text = report.format_projection(pr)
    assert "priced at" in text and "warm-up per job: teacher 10.0 s, student 5.0 s" in text
    # without fused figures a fused grid is said to be priced unfused
    figures["results"][0].pop("fused_sizes")
    assert "fused not measured" in projection.project(cfg, figures)["rows"][0]["variant"]


def test_figures_of_a_gpu_check_merge_for_the_projection(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps({"machine": {"gpu": "G", "cpu": "C"}, "settings": {"batch_size": 128},
                                                 "results": [{"arch": "x", "engine": {"images_per_s": 1.0}}]}))
    (tmp_path / "d.json").write_text(json.dumps({"machine": {"gpu": "G"}, "results": [],
                                                 "distillation": {"modes": {}}}))
    (tmp_path / "j.json").write_text(json.dumps({"jobs": {"teacher": {"first_step_s": 3.0}}}))
    res = merge_figures([tmp_path / "d.json", tmp_path / "b.json", tmp_path / "j.json"])
    assert res["results"][0]["arch"] == "x" and res["distillation"] == {"modes": {}}
    assert res["jobs"]["teacher"]["first_step_s"] == 3.0 and res["machine"]["gpu"] == "G"


def test_a_failing_configuration_is_a_recorded_figure_not_the_end(tmp_path, monkeypatch, _restore_threads):
    real = timing.time_engine

    def flaky(arch, *a, recipe_overrides, **k):
        if recipe_overrides.get("cpu_channels_last"):
            raise RuntimeError("CUDA error: out of memory (a test)")
        return real(arch, *a, recipe_overrides=recipe_overrides, **k)

    monkeypatch.setattr(timing, "time_engine", flaky)
    res = timing.run_benchmark(["resnet8"], batch_size=8, warmup=1, steps=2, workers=1, device="cpu", repeats=1,
                              out_path=str(tmp_path / "b.json"), log=lambda s: None)
    (r,) = res["results"]
    assert set(r["engine_variants"]) == {"fp32"} and "out of memory" in r["errors"]["engine:fp32+cl"]
    assert json.loads((tmp_path / "b.json").read_text())["results"][0]["errors"]  # written as it went
    assert "failed: RuntimeError" in report.format_report(res)


def test_projection_is_images_over_measured_rate():
    figures = {"machine": {"gpu": "G", "cpu": "C"}, "settings": {"batch_size": 128}, "results": [
        {"arch": "resnet56", "engine": {"images_per_s": 1000.0}, "fused": {"speedup_vs_sequential": 2.0}},
        {"arch": "alexnet", "engine": {"images_per_s": 4000.0}},
    ]}
    cfg = {
        "datasets": {"c": {"source": "cifar10"}},
        "recipes": {"r": {"steps": 100, "batch_size": 128}, "a": {"steps": 50}},  # "a": default batch 128
        "teachers": [
            {"dataset": "c", "arch": "resnet56", "recipe": "r", "alphas": [0, 0.1], "seeds": [0, 1, 2], "fuse": True},
            {"dataset": "c", "arch": "alexnet", "recipe": "a", "alphas": [0], "seeds": [0]},
        ],
        "distillation": [{"dataset": "c", "teacher_arch": "resnet56", "student_arch": "alexnet", "student_recipe": "a",
                          "teacher_alphas": [0, 0.1], "temperatures": [1, 2], "seeds": [0]}],
    }
    pr = projection.project(cfg, figures)
    rows = pr["rows"]
    # 6 fused ResNet-56 runs x 100 steps x 128 images at 1000 images/s, twice as fast fused
    assert rows[0]["runs"] == 6 and rows[0]["hours"] * 3600 == pytest.approx(6 * 100 * 128 / 1000 / 2)
    assert rows[1]["hours"] * 3600 == pytest.approx(50 * 128 / 4000)
    # students: LS baselines at alphas 0 and 0.1 (alpha 0 is the AlexNet teacher's run: trained once, as the
    # teacher), the hard teacher at T = 1, 2 (in lockstep, the default: one teacher forward), the LS teacher at T = 1
    assert rows[2]["runs"] == 4 and rows[2]["distilled_runs"] == 3 and rows[2]["teacher_forward_runs"] == 2
    student_s = 4 * 50 * 128 / 4000 + 2 * 50 * 128 / 1000 / 3  # + a teacher forward (1/3 step) per lockstep step
    assert rows[2]["hours"] * 3600 == pytest.approx(student_s)
    separate = copy.deepcopy(cfg)
    separate["distillation"][0]["lockstep"] = False  # every distilled student runs its own teacher forward
    assert projection.project(separate, figures)["rows"][2]["hours"] * 3600 == pytest.approx(
        4 * 50 * 128 / 4000 + 3 * 50 * 128 / 1000 / 3)
    assert pr["total_hours"] * 3600 == pytest.approx(6 * 100 * 128 / 2000 + 50 * 128 / 4000 + student_s)
    assert pr["device"] == "G" and "total" in report.format_projection(pr)
    figures["results"].pop()  # AlexNet not measured: no total, and it says which architecture is missing
    pr = projection.project(cfg, figures)
    assert pr["total_hours"] is None and pr["missing_archs"] == ["alexnet"]


def test_bench_distillation_case_smoke(tmp_path, capsys, _restore_threads):
    """The T family separate vs. lockstep vs. fused, in one process: figures per mode and ratios to separate."""
    out = tmp_path / "d.json"
    assert cli.main(["bench", "--smoke", "--distill-only", "--threads", "1", "--out", str(out)]) == 0
    d = json.loads(out.read_text())["distillation"]
    assert (d["teacher_arch"], d["student_arch"], d["temperatures"]) == ("resnet8", "smallcnn", [1.0, 2.0])
    assert set(d["modes"]) == {"separate", "lockstep", "fused"} and d["ratios"]["separate"] == 1.0
    for m, r in d["modes"].items():
        assert r["images_per_s"] > 0 and r["step_ms"] > 0
        assert d["ratios"][m] == pytest.approx(r["images_per_s"] / d["modes"]["separate"]["images_per_s"])
    assert "| lockstep |" in capsys.readouterr().out
