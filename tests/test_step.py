"""The training step apart from the loop (lspipe.engine.step): bit for bit today's step on the CPU,
bf16 weights cast once per step equal to autocast's casts, per-member clipping equal to
clip_grad_norm_, the engine's settings per device, and (with CUDA only) the step as a CUDA graph."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import synthetic_data
from lspipe.base.errors import ConfigError
from lspipe.core.augment import DeviceLoader, random_crop_flip
from lspipe.core.losses import Objective
from lspipe.core.models import build_model
from lspipe.core.recipe import Recipe
from lspipe.engine import step as S
from lspipe.engine.fused import clip_member_grads_, fuse
from lspipe.engine.training import Members, param_groups, train_group

RECIPE = {"steps": 7, "batch_size": 16, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
          "lr_milestones": [4], "loss_scale": 3.0, "grad_clip": 0.5, "augment": {"pad": 1, "flip": True},
          "checkpoint_every": 1, "eval_batch_size": 64}
VALUES = [{"kind": "ls", "alpha": 0.0}, {"kind": "ls", "alpha": 0.2}]


def _data():
    return synthetic_data((48, 16, 16), channels=3, side=8, classes=4, seed=3, signal=20)


def reference_training(arch, data, recipe: Recipe, values, seed):
    """The loop as it was before the step was split out, written out as a textbook loop: G models of one
    seed, per-batch crops and flips from the run's generator, torch's SGD (its default implementation),
    the learning rate written into the param groups, (sum of losses x loss_scale).backward(),
    torch.nn.utils.clip_grad_norm_ per model; bf16 autocast when cpu_amp."""
    models = []
    for _ in values:
        torch.manual_seed(seed)
        models.append(build_model(arch, data))
    if recipe.cpu_channels_last:
        for m in models:
            m.to(memory_format=torch.channels_last)
    objective = Objective(values)
    group = Members(models)
    opt = torch.optim.SGD(param_groups(group, recipe), lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)
    gen = torch.Generator().manual_seed(seed + 1)
    x, y = torch.from_numpy(data.x["train"]), torch.from_numpy(data.y["train"])
    bs, per_epoch, step = recipe.batch_size, len(y) // recipe.batch_size, 0
    while step < recipe.steps:
        perm = torch.randperm(len(y), generator=gen)
        for b in range(per_epoch):
            if step == recipe.steps:
                break
            rows = perm[b * bs:(b + 1) * bs]
            xb = random_crop_flip(x[rows], recipe.augment["pad"], recipe.augment["flip"], gen)
            if recipe.cpu_channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            for g in opt.param_groups:
                g["lr"] = recipe.lr_at(step)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.cpu_amp):
                logits = torch.stack([m(xb) for m in models], 1)
                loss = objective(logits, y[rows], xb)
            opt.zero_grad(set_to_none=True)
            (loss.sum() * recipe.loss_scale).backward()
            for m in models:
                torch.nn.utils.clip_grad_norm_(m.parameters(), recipe.grad_clip)
            opt.step()
            step += 1
    return models


@pytest.mark.parametrize("arch, cpu_amp, cl", [("smallcnn", False, True), ("resnet8", False, False),
                                               ("smallcnn", True, True), ("alexnet", True, False)])
def test_the_step_on_the_cpu_is_the_textbook_step_bit_for_bit(tmp_path, arch, cpu_amp, cl):
    """fit's step (foreach SGD, one-pass clipping, backward of the losses times a constant vector; in bf16
    the weights cast once per step) gives exactly the weights and buffers of the loop before it, over
    two epochs (a new permutation) and a learning-rate milestone."""
    big = arch == "alexnet"  # 32 x 32 images (two max-pools), fewer of them: the CPU's time
    data = synthetic_data((24, 8, 8), channels=3, side=32, classes=4, seed=3, signal=20) if big else _data()
    recipe = Recipe.from_dict({**RECIPE, "cpu_amp": cpu_amp, "cpu_channels_last": cl,
                               **({"dense_weight_decay": 0.004, "batch_size": 8, "steps": 4, "lr_milestones": [2]}
                                  if big else {})})
    got, summary = train_group(arch, data, recipe, Objective(VALUES), seed=5, checkpoint_path=tmp_path / "ck",
                               metrics_paths=[tmp_path / "a.csv", tmp_path / "b.csv"], progress=False)
    ref = reference_training(arch, data, recipe, VALUES, seed=5)
    for g, (a, b) in enumerate(zip(got, ref)):
        sa, sb = a.state_dict(), b.state_dict()
        assert set(sa) == set(sb)
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (g, k)
    assert summary["engine"]["bf16_weights_once_per_step"] == cpu_amp
    assert summary["engine"]["cuda_graph"] is False and summary["engine"]["optimizer"] == "foreach"


def test_the_engine_emulating_a_gpu_on_the_cpu_trains_and_records_its_settings(tmp_path):
    """The CUDA settings (fused SGD with a tensor learning rate, whole-epoch augmentation, bf16 weights once
    per step) run through the same loop on the CPU (the operation count does so): they learn."""
    data = _data()
    recipe = Recipe.from_dict({**RECIPE, "steps": 30, "lr_milestones": [], "grad_clip": 1.0, "loss_scale": 1.0})
    engine = dataclasses.replace(S.resolve_engine(recipe, "cuda", "smallcnn"), device_type="cpu", cuda_graph="off")
    assert engine.optimizer == "fused" and engine.epoch_augment and engine.shadows
    out = {}
    for name, eng in (("gpu", engine), ("cpu", None)):
        _, out[name] = train_group("smallcnn", data, recipe, Objective(VALUES), seed=0, checkpoint_path=tmp_path / name,
                                   metrics_paths=[tmp_path / f"{name}{i}.csv" for i in range(2)], progress=False,
                                   engine=eng)
    assert out["gpu"]["engine"]["optimizer"] == "fused" and out["gpu"]["engine"]["epoch_augment"]
    for gpu, cpu in zip(out["gpu"]["final"], out["cpu"]["final"]):  # another augmentation stream, bf16: as well
        assert gpu["train_loss"] < 1.2 and abs(gpu["train_loss"] - cpu["train_loss"]) < 0.25, (gpu, cpu)


# --------------------------------------------------------------------------- bf16 weights once per step


def test_bf16_weights_cast_once_per_step_equal_autocasts_casts():
    torch.manual_seed(0)
    data = _data()
    a, b = build_model("resnet8", data), build_model("resnet8", data)
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = a(x)
    ref.float().square().sum().backward()
    shadows = S.ShadowWeights(b)
    assert len(shadows) == sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in b.modules()) + 1  # fc bias
    shadows.zero_grad()
    with shadows.swapped(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = b(x)
    assert all(p.dtype == torch.float32 for p in b.parameters())  # swapped back
    got.float().square().sum().backward()
    shadows.grads_to_masters()
    assert torch.equal(got, ref)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa.grad, pb.grad), n


# --------------------------------------------------------------------------- clipping


def _grads(models, seed=0):
    g = torch.Generator().manual_seed(seed)
    for i, m in enumerate(models):
        for p in m.parameters():
            p.grad = torch.randn(p.shape, generator=g) * (0.1 + i)


def test_members_clipping_equals_clip_grad_norm_per_member_bit_for_bit():
    data = _data()
    torch.manual_seed(0)
    models = [build_model("smallcnn", data) for _ in range(3)]
    refs = [build_model("smallcnn", data) for _ in range(3)]
    _grads(models)
    _grads(refs)
    norms = Members(models).clip_grad_norm_(1.0)
    for m, r, n in zip(models, refs, norms):
        want = torch.nn.utils.clip_grad_norm_(r.parameters(), 1.0)
        assert torch.equal(n, want)
        for p, q in zip(m.parameters(), r.parameters()):
            assert torch.equal(p.grad, q.grad)
    assert float(norms.min()) > 1.0  # every member was clipped


def test_fused_clipping_equals_clip_grad_norm_per_member():
    data = _data()
    torch.manual_seed(0)
    models = [build_model("resnet8", data) for _ in range(3)]
    fused = fuse(models).to(memory_format=torch.channels_last)
    _grads(models)
    for key, p in fused.named_parameters():  # the members' gradients, fused as their weights are
        parts = [dict(m.named_parameters())[key].grad for m in models]
        p.grad = (torch.stack(parts) if fused.layouts[key] == "stack" else torch.cat(parts)).contiguous(
            memory_format=torch.channels_last if p.dim() == 4 else torch.contiguous_format)
    norms = fused.clip_grad_norm_(0.7)
    for i, m in enumerate(models):
        want = torch.nn.utils.clip_grad_norm_(m.parameters(), 0.7)
        torch.testing.assert_close(norms[i], want, rtol=1e-6, atol=0)
    for key, p in fused.named_parameters():
        for i, m in enumerate(models):
            got = fused._member_view(key, p.grad)[i]
            torch.testing.assert_close(got, dict(m.named_parameters())[key].grad, rtol=1e-6, atol=1e-9)


def test_one_pass_clipping_needs_few_operations_whatever_the_parameter_count():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += not func.is_view
            return func(*args, **(kwargs or {}))

    grads = [[torch.randn(5, 3) for _ in range(60)] for _ in range(7)]
    with Count():
        clip_member_grads_(grads, 1.0)
    # norm, stack, norm of norms, +, 1/x and x (max_norm / ... as torch computes it), clamp; one multiply per member
    assert Count.n <= 7 + 7, Count.n


# --------------------------------------------------------------------------- the engine's settings


def test_engine_settings_per_device():
    r = Recipe.from_dict({"steps": 1})
    cpu = S.resolve_engine(r, "cpu", "resnet56")
    assert (cpu.precision, cpu.channels_last, cpu.cuda_graph, cpu.optimizer, cpu.epoch_augment) == \
        ("fp32", True, "off", "foreach", False)
    cuda = S.resolve_engine(r, "cuda", "resnet56")
    assert (cuda.precision, cuda.channels_last) == S.AUTO_CUDA["resnet56"] and cuda.cuda_graph == "auto"
    assert cuda.optimizer == "fused" and cuda.epoch_augment and cuda.shadows and "auto" in cuda.why["precision"]
    fp32 = S.resolve_engine(Recipe.from_dict({"steps": 1, "precision": "tf32", "channels_last": False,
                                              "cuda_graph": False}), "cuda", "alexnet")
    assert (fp32.precision, fp32.channels_last, fp32.cuda_graph, fp32.shadows) == ("tf32", False, "off", False)
    comp = S.resolve_engine(Recipe.from_dict({"steps": 1, "compile": True}), "cuda", "resnet56")
    assert comp.cuda_graph == "off" and "compile" in comp.why["cuda_graph"] and not comp.shadows
    assert S.resolve_engine(r, "cuda", "resnet56", distributed=True).cuda_graph == "off"
    with pytest.raises(ConfigError, match="cuda_graph: auto or false"):
        S.resolve_engine(Recipe.from_dict({"steps": 1, "compile": True, "cuda_graph": True}), "cuda", "resnet56")
    with pytest.raises(ConfigError, match="replaced by precision"):
        Recipe.from_dict({"steps": 1, "amp": True})
    with pytest.raises(ConfigError, match="precision"):
        Recipe.from_dict({"steps": 1, "precision": "fp16"})


def test_tf32_flags_follow_the_precision_and_are_restored():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    eng = S.resolve_engine(Recipe.from_dict({"steps": 1, "precision": "fp32"}), "cuda", "resnet56")
    with S.arithmetic(eng):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    with S.arithmetic(dataclasses.replace(eng, precision="tf32")):
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


# --------------------------------------------------------------------------- whole-epoch augmentation


def test_whole_epoch_augmentation_draws_valid_crops_of_the_permuted_images():
    x = torch.randint(0, 256, (40, 2, 5, 5), dtype=torch.uint8)
    y = torch.arange(40)
    for chunk in (None, 1, 3 * x[:1].nbytes * 4, 10**9):
        g = torch.Generator().manual_seed(0)
        batches = list(DeviceLoader(x, y, 4, pad=1, flip=True, generator=g, chunk_bytes=chunk))
        assert len(batches) == 10 and sorted(torch.cat([b for _, b in batches]).tolist()) == list(range(40))
        for xb, yb in batches:
            for img, i in zip(xb, yb):
                src = torch.nn.functional.pad(x[i], (1, 1, 1, 1))
                crops = [c for oy in range(3) for ox in range(3) for c in
                         (src[:, oy:oy + 5, ox:ox + 5], src[:, oy:oy + 5, ox:ox + 5].flip(-1))]
                assert any(torch.equal(img, c) for c in crops)
    # no randomness but the permutation: chunked and batch by batch agree exactly
    a = list(DeviceLoader(x, y, 4, generator=torch.Generator().manual_seed(1)))
    b = list(DeviceLoader(x, y, 4, generator=torch.Generator().manual_seed(1), chunk_bytes=10**9,
                          memory_format=torch.channels_last))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert b[0][0].is_contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- the CUDA graph (GPU only)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("arch, fused", [("resnet8", False), ("resnet8", True), ("alexnet", False)])
def test_the_graphed_step_matches_the_eager_step_on_cuda(tmp_path, arch, fused):
    data = synthetic_data((512, 64, 64), channels=3, side=32, classes=4, seed=3, signal=20)
    out = {}
    for graph in (False, "auto"):
        recipe = Recipe.from_dict({**RECIPE, "steps": 40, "batch_size": 32, "cuda_graph": graph,
                                   "precision": "tf32"})
        models, summary = train_group(arch, data, recipe, Objective(VALUES), seed=0, fuse=fused, device="cuda",
                                      checkpoint_path=tmp_path / f"c{graph}", progress=False,
                                      metrics_paths=[tmp_path / f"{graph}{i}.csv" for i in range(2)])
        out[graph] = (models, summary)
    assert out["auto"][1]["engine"]["cuda_graph"] is True, out["auto"][1]["engine"]
    for a, b in zip(out[False][0], out["auto"][0]):
        for k, v in a.state_dict().items():
            if v.is_floating_point():
                torch.testing.assert_close(b.state_dict()[k], v, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose([f["train_loss"] for f in out["auto"][1]["final"]],
                               [f["train_loss"] for f in out[False][1]["final"]], rtol=1e-3)
