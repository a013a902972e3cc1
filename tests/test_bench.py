"""`lspipe bench`: runs end to end (smoke mode, seconds) and writes well-formed figures."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from lspipe import bench, cli
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
    printed = capsys.readouterr().out
    assert "engine / baseline" in printed and m["cpu"] in printed


def test_baseline_and_engine_feed_the_model_the_same_numbers():
    """The baseline's ToTensor + Normalize of a PIL image equals the model's own normalisation of
    the uint8 tensor the engine keeps (so both loops train the same function of the image)."""
    import torchvision.transforms as T

    x, y = bench.random_cifar(4, seed=1)
    ds = bench.CifarLikeDataset(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y,
                                T.Compose([T.ToTensor(), T.Normalize(bench.CIFAR_MEAN, bench.CIFAR_STD)]))
    model = models.create("resnet8", 10, 3, 32, bench.CIFAR_MEAN, bench.CIFAR_STD)
    for i in range(4):
        img, label = ds[i]
        assert label == y[i]
        torch.testing.assert_close(img, model.normalize(torch.from_numpy(x[i : i + 1]))[0], atol=1e-5, rtol=1e-5)


def test_engine_variants_per_device():
    cpu = bench.engine_variants(torch.device("cpu"), False, None, cpu_bf16=True)
    assert cpu["fp32"] == {"cpu_amp": False, "cpu_channels_last": False}
    assert cpu["bf16+cl"] == {"cpu_amp": True, "cpu_channels_last": True}
    cuda = bench.engine_variants(torch.device("cuda"), True, "reduce-overhead", cpu_bf16=False)
    assert cuda == {"bf16+cl+compile": {"amp": True, "channels_last": True, "compile": True,
                                        "compile_mode": "reduce-overhead"}}


def test_projection_is_images_over_measured_rate():
    figures = {"machine": {"gpu": "G", "cpu": "C"}, "settings": {"batch_size": 128}, "results": [
        {"arch": "resnet56", "engine": {"images_per_s": 1000.0}, "fused": {"speedup_vs_sequential": 2.0}},
        {"arch": "alexnet", "engine": {"images_per_s": 4000.0}},
    ]}
    cfg = {
        "recipes": {"r": {"steps": 100, "batch_size": 128}, "a": {"steps": 50}},  # "a": default batch 128
        "teachers": [
            {"dataset": "c", "arch": "resnet56", "recipe": "r", "alphas": [0, 0.1], "seeds": [0, 1, 2], "fuse": True},
            {"dataset": "c", "arch": "alexnet", "recipe": "a", "alphas": [0], "seeds": [0]},
        ],
        "distillation": [{"dataset": "c", "teacher_arch": "resnet56", "student_arch": "alexnet", "student_recipe": "a",
                          "teacher_alphas": [0, 0.3], "temperatures": [1, 2], "seeds": [0]}],
    }
    pr = bench.project(cfg, figures)
    rows = pr["rows"]
    # 6 fused ResNet-56 runs x 100 steps x 128 images at 1000 images/s, twice as fast fused
    assert rows[0]["runs"] == 6 and rows[0]["hours"] * 3600 == pytest.approx(6 * 100 * 128 / 1000 / 2)
    assert rows[1]["hours"] * 3600 == pytest.approx(50 * 128 / 4000)
    # students: LS baselines at alphas 0 and 0.3 (alpha 0 is the AlexNet teacher's run: trained once, as the
    # teacher), the hard teacher at T = 1, 2 (in lockstep, the default: one teacher forward), the LS teacher at T = 1
    assert rows[2]["runs"] == 4 and rows[2]["distilled_runs"] == 3 and rows[2]["teacher_forward_runs"] == 2
    student_s = 4 * 50 * 128 / 4000 + 2 * 50 * 128 / 1000 / 3  # + a teacher forward (1/3 step) per lockstep step
    assert rows[2]["hours"] * 3600 == pytest.approx(student_s)
    separate = copy.deepcopy(cfg)
    separate["distillation"][0]["lockstep"] = False  # every distilled student runs its own teacher forward
    assert bench.project(separate, figures)["rows"][2]["hours"] * 3600 == pytest.approx(
        4 * 50 * 128 / 4000 + 3 * 50 * 128 / 1000 / 3)
    assert pr["total_hours"] * 3600 == pytest.approx(6 * 100 * 128 / 2000 + 50 * 128 / 4000 + student_s)
    assert pr["device"] == "G" and "total" in bench.format_projection(pr)
    figures["results"].pop()  # AlexNet not measured: no total, and it says which architecture is missing
    pr = bench.project(cfg, figures)
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
