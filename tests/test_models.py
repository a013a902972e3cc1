"""Model registry: parameter counts and forward shapes, including the penultimate output."""

from pathlib import Path

import pytest
import torch

from lspipe.core import models


def test_resnet56_has_the_papers_parameter_count():
    # He et al. (2016): ResNet-56 for CIFAR has 0.85M parameters (option A shortcuts, K = 10).
    m = models.create("resnet56", 10, 3, 32)
    assert models.count_parameters(m) == 853_018
    # by hand: conv/BN weights of 27 blocks + stem + the 64 -> K classifier
    stem = 3 * 16 * 9 + 2 * 16
    blocks = sum(
        (cin * c * 9 + 2 * c) + (c * c * 9 + 2 * c)
        for cin, c in [(16, 16)] * 9 + [(16, 32)] + [(32, 32)] * 8 + [(32, 64)] + [(64, 64)] * 8
    )
    assert models.count_parameters(m) == stem + blocks + 64 * 10 + 10


@pytest.mark.parametrize(
    "arch,shape,feat",
    [
        ("resnet56", (3, 32, 32), 64),
        ("resnet20", (3, 32, 32), 64),
        ("alexnet", (3, 32, 32), 192),
        ("alexnet", (3, 24, 24), 192),
        ("smallcnn", (1, 8, 8), 128),
        ("mlp", (1, 8, 8), 1200),
    ],
)
@pytest.mark.parametrize("k", [10, 100])
def test_forward_shapes_and_penultimate(arch, shape, feat, k):
    m = models.create(arch, k, shape[0], shape[1]).eval()
    x = torch.randint(0, 256, (3, *shape), dtype=torch.uint8)
    logits, h = m(x, features=True)
    assert logits.shape == (3, k) and h.shape == (3, feat)
    # the penultimate output is exactly what the classifier consumes
    torch.testing.assert_close(m.classifier(h), logits)
    torch.testing.assert_close(m(x), logits)
    # uint8 input equals the same image given as floats in [0, 1]
    torch.testing.assert_close(m(x.float() / 255), logits)


def test_alexnet_is_the_tf_tutorial_net():
    m = models.create("alexnet", 10, 3, 32)
    convs = [l for l in m.modules() if isinstance(l, torch.nn.Conv2d)]
    dense = [l for l in m.modules() if isinstance(l, torch.nn.Linear)]
    lrn = [l for l in m.modules() if isinstance(l, torch.nn.LocalResponseNorm)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(3, 64, (5, 5)), (64, 64, (5, 5))]
    assert [(d.in_features, d.out_features) for d in dense] == [(64 * 8 * 8, 384), (384, 192), (192, 10)]
    assert len(lrn) == 2 and lrn[0].size == 9 and lrn[0].alpha == pytest.approx(0.001)
    assert len(m.dense_parameters()) == 2  # the two hidden layers; never the logit layer


def test_unknown_arch_and_bad_depth():
    with pytest.raises(ValueError, match="available"):
        models.create("vgg16", 10, 3, 32)
    with pytest.raises(ValueError, match="6n\\+2"):
        models.create("resnet21", 10, 3, 32)
    assert models.is_known("resnet110") and not models.is_known("resnet21") and not models.is_known("vgg")


def test_alexnet_paper_recipe_parameter_groups():
    """The paper preset's AlexNet recipe: 0.004 on local3/local4 (weights), nothing on the logit layer."""
    import yaml

    from lspipe.core.recipe import Recipe
    from lspipe.engine.training import param_groups

    preset = yaml.safe_load((Path(__file__).resolve().parent.parent / "workflow/presets/paper.yaml").read_text())
    recipe = Recipe.from_dict(preset["recipes"]["alexnet"])
    m = models.create("alexnet", 10, 3, 32)
    local3, local4 = m.body.dense[1], m.body.dense[3]
    decay = {id(p): g["weight_decay"] for g in param_groups(m, recipe) for p in g["params"]}
    assert len(decay) == len(list(m.parameters()))  # every parameter in exactly one group
    assert decay[id(local3.weight)] == decay[id(local4.weight)] == pytest.approx(0.004)
    for p in (m.classifier.weight, m.classifier.bias, local3.bias, local4.bias, *m.body.features.parameters()):
        assert decay[id(p)] == 0.0
    # the optimiser applies it: one SGD step on a zero gradient shrinks exactly the decayed weights
    opt = torch.optim.SGD(param_groups(m, recipe), lr=1.0)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in m.named_parameters():
        factor = 1 - 0.004 if n in ("body.dense.1.weight", "body.dense.3.weight") else 1.0
        torch.testing.assert_close(p.detach(), before[n] * factor, msg=n)


def test_lrn_in_float32_is_pytorchs_and_in_bf16_stays_bf16_without_casts():
    """AlexNet's LRN: float32 is nn.LocalResponseNorm bit for bit; the banded-convolution form (what
    bf16 uses) equals it in float32 to rounding, gradients too; under bf16 autocast it stays bf16,
    with no cast (PyTorch's pooling and power leave bf16 and come back), within bf16 rounding of the
    float32 LRN of the same input; grouped, it normalises each group alone."""
    from torch.utils._python_dispatch import TorchDispatchMode

    torch.manual_seed(0)
    ref = torch.nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)
    ours = models.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)
    x = torch.relu(torch.randn(4, 64, 8, 8) * 5)
    assert torch.equal(ours(x), ref(x))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = ref(xa)
    got = models.lrn_by_convolution(xb, 9, 0.001, 0.75, 1.0)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    g = torch.randn_like(want)
    want.backward(g)
    got.backward(g)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-5)

    class Casts(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Casts.n += func.overloadpacket.__name__ == "_to_copy"
            return func(*args, **(kwargs or {}))

    x16 = x.bfloat16()
    ours(x16)  # the band matrix of bf16 is made once, then cached
    with Casts(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = ours(x16)
    assert out.dtype == torch.bfloat16 and Casts.n == 0
    exact = ref(x16.float())
    assert float(((out.float() - exact).abs() / (exact.abs() + 1e-3)).max()) < 2e-2  # a few bf16 roundings
    # grouped: each block of channels alone (a fused model's members)
    two = torch.cat([x16, 3 * x16], 1)
    both = models.local_response_norm(two, 9, 0.001, 0.75, 1.0, groups=2)
    torch.testing.assert_close(both[:, :64], models.local_response_norm(x16, 9, 0.001, 0.75, 1.0), rtol=0, atol=0)
    torch.testing.assert_close(both[:, 64:], models.local_response_norm(3 * x16, 9, 0.001, 0.75, 1.0), rtol=0, atol=0)
