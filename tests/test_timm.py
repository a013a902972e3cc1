"""timm architectures through the model registry (``timm:<name>``, ``inception_v4``, ``resnet50``):
the Classifier contract (penultimate features, logit-layer template, normalisation), parameter
counts, errors, a few optimisation steps, and save/load."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lspipe.core import models


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return models.create("timm:resnet18", 10, 3, 32, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])


def test_timm_model_keeps_the_classifier_contract(resnet18):
    import timm

    m = resnet18.eval()
    assert isinstance(m, models.Classifier) and isinstance(m.classifier, nn.Linear)
    assert m.classifier.in_features == 512 and m.classifier.out_features == 10
    # the body is timm's network without a classifier of its own: it ends in the pooled features
    assert isinstance(m.body.get_classifier(), nn.Identity) and m.body.num_classes == 0
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    logits, h = m(x, features=True)
    assert logits.shape == (4, 10) and h.shape == (4, 512)
    # the logits are the template (weights and bias) applied to the penultimate features
    torch.testing.assert_close(logits, h @ m.classifier.weight.T + m.classifier.bias)
    # normalisation with the dataset's statistics, uint8 or float input alike
    torch.testing.assert_close(m(x.float() / 255), logits)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    torch.testing.assert_close(m.body((x.float() / 255 - mean) / std), h)
    # the same numbers as timm's own model with its classifier, given our weights (a reference built another way)
    ref = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    state = {k.removeprefix("body."): v for k, v in m.state_dict().items() if k.startswith("body.")}
    state.update({"fc.weight": m.classifier.weight, "fc.bias": m.classifier.bias})
    ref.load_state_dict(state)
    torch.testing.assert_close(ref((x.float() / 255 - mean) / std), logits)
    # no hidden fully connected layers: nothing for dense_weight_decay
    assert m.dense_parameters() == []


def test_timm_model_trains_a_few_steps(one_torch_thread):
    torch.manual_seed(1)
    m = models.create("timm:resnet18", 3, 1, 32).train()
    x = torch.randint(0, 256, (12, 1, 32, 32), dtype=torch.uint8)
    y = torch.arange(12) % 3
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # it fits 12 images
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_registered_names_have_the_papers_parameter_counts():
    # built on the meta device: shapes without memory or initialisation
    with torch.device("meta"):
        v4 = models.create("inception_v4", 1000, 3, 299)
        r50 = models.create("resnet50", 1000, 3, 224)
    assert models.count_parameters(v4) == 42_679_816  # Inception-v4: 42.7M (Szegedy et al. 2017)
    assert models.count_parameters(r50) == 25_557_032  # ResNet-50: 25.6M (He et al. 2016)
    assert v4.classifier.in_features == 1536 and r50.classifier.in_features == 2048
    # resnet50 is the ImageNet network (bottleneck blocks), not a CIFAR 6n+2 ResNet
    assert not isinstance(r50.body, models.ResNetBody)
    assert models.is_known("resnet50") and models.is_known("resnet56") and models.is_known("timm:resnet18")
    assert not models.is_known("timm:no_such_net")
    assert any("timm:<name>" in a for a in models.available())


def test_timm_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"inception_v4 needs images of at least 75 px.*image_size"):
        models.create("inception_v4", 10, 3, 64)
    with pytest.raises(ValueError, match="pretrained weights are not loaded"):
        models.create("timm:resnet18", 10, 3, 32, pretrained=True)
    with pytest.raises(ValueError, match="unknown timm architecture 'resnet_nope'"):
        models.create("timm:resnet_nope", 10, 3, 32)


def test_timm_model_saves_and_loads(resnet18, tmp_path):
    spec = {"arch": "timm:resnet18", "num_classes": 10, "in_channels": 3, "image_size": 32,
            "kwargs": {"drop_rate": 0.2}}
    m = models.create("timm:resnet18", 10, 3, 32, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3], drop_rate=0.2)
    m.load_state_dict(resnet18.state_dict())
    models.save_model(tmp_path / "m.pt", m, spec, {"run": "x"})
    back, meta = models.load_model(tmp_path / "m.pt")
    assert meta == {"run": "x"} and back.body.drop_rate == 0.2
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(back(x), resnet18.eval()(x))
