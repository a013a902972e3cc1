"""Model registry.

Every model takes a batch of images (uint8 in 0..255, or float already in [0, 1]), normalises
it with the training split's per-channel statistics (buffers, so checkpoints are
self-contained), and returns logits; ``forward(x, features=True)`` also returns the
penultimate activations, i.e. the input of ``model.classifier`` (an ``nn.Linear``), which the
activation dumps and the template-plane projections use.

Registered architectures:

* ``resnet<6n+2>`` (e.g. ``resnet56``): the CIFAR ResNet of He et al. (2016), widths 16/32/64,
  option-A (parameter-free, zero-padded) shortcuts; ResNet-56 has 0.85M parameters.
* ``alexnet``: the paper's "AlexNet", the TensorFlow CIFAR-10 tutorial network (conv5x5-64,
  maxpool 3/2, LRN, conv5x5-64, LRN, maxpool 3/2, FC 384, FC 192, linear K).
* ``smallcnn``: a two-block CNN for the bundled 8x8 digits and quick CPU runs.
* ``mlp``: a fully connected ReLU net, hidden sizes 1200, 1200 (configurable, as are input and
  hidden dropout); ``mlp1200_dropout`` and ``mlp800`` are the paper's MNIST distillation toy's
  teacher (784-1200-1200-10, dropout 0.2 on the inputs and 0.5 on the hidden units, as Hinton et
  al. 2015's teacher) and student (784-800-800-10, no regularisation).
* ``timm:<name>``: any architecture of the ``timm`` library (``timm.list_models()``), built
  without pretrained weights (nothing is downloaded), its classifier removed (``num_classes=0``:
  the model then returns its pre-logit features, which become ``body``) and replaced by
  ``Classifier.classifier``. Keyword arguments (``drop_rate``, ``drop_path_rate``, ...) go to
  ``timm.create_model``.
* ``inception_v4``: the paper's ImageNet network (Szegedy et al. 2017), ``timm:inception_v4``;
  42.7M parameters at K = 1000, inputs of at least 75 px (299 in the paper).
* ``resnet50``: ResNet-50 for ImageNet (He et al. 2016, bottleneck blocks), ``timm:resnet50``, the
  common cheaper stand-in; 25.6M parameters at K = 1000. (The CIFAR family below has no depth 50:
  6n+2 = 50 would be a CIFAR ResNet of 16/32/64 channels nobody means by "ResNet-50".)
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lspipe.base.errors import ModelError
from lspipe.base.io import torch_save, zip_problem
from lspipe.base.paths import parse_model_path
from lspipe.base.runs import parse_run
from lspipe.core.recipe import identity as recipe_identity

if TYPE_CHECKING:
    from lspipe.core.data import Prepared

MODEL_REGISTRY: dict[str, Callable[..., "Classifier"]] = {}


def register(name: str):
    def deco(fn):
        MODEL_REGISTRY[name] = fn
        return fn

    return deco


class Classifier(nn.Module):
    """Base class: input normalisation, a feature extractor ``body`` and a linear ``classifier``."""

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, mean, std):
        super().__init__()
        c = len(mean)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, c, 1, 1).clamp_min(1e-6))
        self.body = body
        self.classifier = nn.Linear(feature_dim, num_classes)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor, features: bool = False):
        h = self.body(self.normalize(x))
        logits = self.classifier(h)
        return (logits, h) if features else logits

    def dense_parameters(self) -> list[nn.Parameter]:
        """Weights of the hidden fully connected layers, without the logit layer ``classifier``.

        The paper's AlexNet (the TF CIFAR-10 tutorial net) puts weight decay 0.004 on its two
        hidden dense layers (local3, local4) only: neither the convolutions, nor the biases, nor the
        output layer (which label smoothing and distillation act on) are decayed.
        """
        return [m.weight for m in self.body.modules() if isinstance(m, nn.Linear)]

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_`` of all parameters (a fused model clips each member's)."""
        return torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm)


# --------------------------------------------------------------------------- ResNet (CIFAR)


class _ShortcutA(nn.Module):
    """Option-A shortcut: subsample spatially, zero-pad the new channels (no parameters)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride, self.pad = stride, planes - in_planes

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = (
            _ShortcutA(in_planes, planes, stride) if stride != 1 or in_planes != planes else nn.Identity()
        )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetBody(nn.Module):
    def __init__(self, depth: int, in_channels: int, widths=(16, 32, 64)):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        layers, in_planes = [], widths[0]
        for stage, planes in enumerate(widths):
            for b in range(n):
                layers.append(BasicBlock(in_planes, planes, 2 if (stage > 0 and b == 0) else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.out_dim = in_planes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.layers(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def resnet(depth: int, num_classes: int, in_channels: int, image_size: int, mean, std) -> Classifier:
    body = ResNetBody(depth, in_channels)
    return Classifier(body, body.out_dim, num_classes, mean, std)


# 6n+2 for n = 1..200: resnet8, resnet20, resnet56, resnet110, ..., resnet1202; 50 is the ImageNet ResNet-50
RESNET_DEPTHS = [d for d in range(8, 1203, 6) if d != 50]
for _depth in RESNET_DEPTHS:
    register(f"resnet{_depth}")(functools.partial(resnet, _depth))


# --------------------------------------------------------------------------- AlexNet (TF tutorial)


def local_response_norm(x: torch.Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                        groups: int = 1, cache: dict | None = None) -> torch.Tensor:
    """``F.local_response_norm`` over each of ``groups`` equal blocks of channels, in ``x``'s precision.

    float32 (and float64) inputs take PyTorch's own ``F.local_response_norm`` (on a ``(B*groups) x C``
    view for several groups), bit for bit what ``nn.LocalResponseNorm`` computes. Lower precisions
    (bf16 under autocast) stay in that precision, with no cast: the sum of squares over the window of
    ``size`` neighbouring channels is one 1x1 convolution with a band matrix (``alpha / size`` inside the
    window, bias ``k``; grouped per block), then ``x * d ** -beta``, under a local autocast-off so that
    neither the pooling (fp32 under CPU autocast) nor the power (fp32 under CUDA autocast) leaves bf16
    and comes back: 4 operations forward, where the fp32 detour costs 4 casts more. ``cache`` (a dict)
    keeps the band matrices per dtype, device and width.
    """
    if x.dtype in (torch.float32, torch.float64):
        if groups == 1:
            return F.local_response_norm(x, size, alpha, beta, k)
        b, c, h, w = x.shape
        out = F.local_response_norm(x.reshape(b * groups, c // groups, h, w), size, alpha, beta, k).reshape(b, c, h, w)
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out
    return lrn_by_convolution(x, size, alpha, beta, k, groups, cache)


def lrn_by_convolution(x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int = 1,
                       cache: dict | None = None) -> torch.Tensor:
    """The LRN of :func:`local_response_norm` as a banded 1x1 convolution, in ``x``'s dtype (any)."""
    key = (x.dtype, x.device, x.shape[1], groups)
    band = None if cache is None else cache.get(key)
    if band is None:
        band = _lrn_band(x.shape[1] // groups, groups, size, alpha, k, x.dtype, x.device)
        if cache is not None:
            cache[key] = band
    with torch.autocast(device_type=x.device.type, enabled=False):
        d = F.conv2d(x * x, band[0], band[1], groups=groups)  # k + alpha/size * (sum of the window's squares)
        return x * d.pow(-beta)


def _lrn_band(c: int, groups: int, size: int, alpha: float, k: float, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1x1 convolution of :func:`local_response_norm`: weight ``(groups*c) x c x 1 x 1``, bias ``k``."""
    with torch.no_grad():
        i = torch.arange(c)
        off = i[None, :] - i[:, None]  # j - c for output channel c (row) and input channel j (column)
        band = ((off >= -(size // 2)) & (off <= (size - 1) // 2)).to(torch.float64) * (alpha / size)
        w = band.repeat(groups, 1).reshape(groups * c, c, 1, 1).to(device=device, dtype=dtype)
        return w, torch.full((groups * c,), k, dtype=dtype, device=device)


class LocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` that stays in the input's precision (:func:`local_response_norm`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._band: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k, cache=self._band)


class AlexNetBody(nn.Module):
    """The TensorFlow CIFAR-10 tutorial network used as "AlexNet" in the paper.

    TF's LRN (depth_radius=4, bias=1, alpha=0.001/9, beta=0.75) is PyTorch's
    ``LocalResponseNorm(size=9, alpha=0.001, beta=0.75, k=1)`` (PyTorch divides alpha by size).
    Max-pooling 3/2 uses padding 1 (TF 'SAME' pads only the far side; the difference is one
    border row/column of -inf). The LRN is :class:`LocalResponseNorm`: PyTorch's in float32, and in
    bf16 without leaving bf16.
    """

    def __init__(self, in_channels: int, image_size: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, padding=1),
            LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
            nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(inplace=True),
            LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
            nn.MaxPool2d(3, 2, padding=1),
        )
        side = image_size
        for _ in range(2):
            side = (side + 2 - 3) // 2 + 1
        self.dense = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 384), nn.ReLU(inplace=True),
            nn.Linear(384, 192), nn.ReLU(inplace=True),
        )
        self.out_dim = 192

    def forward(self, x):
        return self.dense(self.features(x))


@register("alexnet")
def alexnet(num_classes: int, in_channels: int, image_size: int, mean, std) -> Classifier:
    body = AlexNetBody(in_channels, image_size)
    return Classifier(body, body.out_dim, num_classes, mean, std)


# --------------------------------------------------------------------------- small nets


@register("smallcnn")
def smallcnn(num_classes: int, in_channels: int, image_size: int, mean, std, width: int = 32) -> Classifier:
    """conv3x3(w)-BN-ReLU, conv3x3(2w)-BN-ReLU, maxpool 2, conv3x3(2w)-BN-ReLU, global pool, FC 128."""
    body = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2 * width, 128), nn.ReLU(inplace=True),
    )
    return Classifier(body, 128, num_classes, mean, std)


@register("mlp")
def mlp(num_classes: int, in_channels: int, image_size: int, mean, std, hidden=(1200, 1200),
        input_dropout: float = 0.0, dropout: float = 0.0) -> Classifier:
    """Fully connected, ReLU: ``Flatten``, then per hidden size ``Linear``-``ReLU``, then the logit layer.

    ``input_dropout`` drops input pixels (after normalisation), ``dropout`` the output of every
    hidden layer, the penultimate one included (Hinton et al. 2012, "Improving neural networks by
    preventing co-adaptation of feature detectors": 20 % of the pixels and 50 % of the hidden units
    on MNIST). Dropout acts in training mode only: evaluation, dumps and distillation teachers run
    in eval mode, where the features are the full activations (``torch.nn.Dropout`` scales by
    1 / (1 - p) while training)."""
    layers: list[nn.Module] = [nn.Flatten()]
    if input_dropout:
        layers.append(nn.Dropout(input_dropout))
    d = in_channels * image_size * image_size
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        d = h
    return Classifier(nn.Sequential(*layers), d, num_classes, mean, std)


# The paper's MNIST distillation toy (section 4), after Hinton, Vinyals & Dean (2015, section 3): a teacher
# with two hidden layers of 1200 ReLU units, regularised with dropout (Hinton et al. 2012's MNIST rates: 20 %
# of the input pixels, 50 % of the hidden units), and a student with two of 800 and no regularisation.
register("mlp1200_dropout")(functools.partial(mlp, hidden=(1200, 1200), input_dropout=0.2, dropout=0.5))
register("mlp800")(functools.partial(mlp, hidden=(800, 800)))


# --------------------------------------------------------------------------- timm


TIMM_PREFIX = "timm:"
TIMM_NAMES = {"inception_v4": ("inception_v4", 75), "resnet50": ("resnet50", 32)}  # name: (timm name, least input side)


def _timm():
    try:
        import timm  # ~2 s to import: only when a timm architecture is asked for
    except ImportError:  # pragma: no cover - timm is a dependency
        raise ValueError("timm architectures need the timm package: pip install timm") from None
    return timm


def timm_classifier(name: str, num_classes: int, in_channels: int, image_size: int, mean, std,
                    min_size: int = 1, **kwargs) -> Classifier:
    """A ``timm`` architecture as a :class:`Classifier`: timm's network without its classifier is
    the body (its output, the pre-logit features, is what timm's classifier would consume), and
    ``Classifier.classifier`` is a new ``nn.Linear`` of timm's head size; timm's own normalisation
    is not used (inputs are normalised with the dataset's statistics, as for every model)."""
    timm = _timm()
    if kwargs.get("pretrained") or "checkpoint_path" in kwargs or "pretrained_cfg" in kwargs:
        raise ValueError(f"timm:{name}: pretrained weights are not loaded (runs train from scratch, offline); "
                         "remove pretrained/checkpoint_path from the model's keyword arguments")
    if not timm.is_model(name):
        raise ValueError(f"unknown timm architecture {name!r}; timm.list_models() lists them, e.g. resnet18, "
                         "resnet50, inception_v4, efficientnet_b0")
    if image_size < min_size:
        raise ValueError(f"{name} needs images of at least {min_size} px (got {image_size}); raise "
                         "datasets.<name>.image_size")
    body = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels, **kwargs)
    dim = getattr(body, "head_hidden_size", None) or body.num_features
    return Classifier(body, dim, num_classes, mean, std)


for _name, (_timm_name, _least) in TIMM_NAMES.items():
    register(_name)(functools.partial(timm_classifier, _timm_name, min_size=_least))


def available() -> list[str]:
    """The registered names, the ResNet family summarised in one entry."""
    cifar = {f"resnet{d}" for d in RESNET_DEPTHS}
    return sorted(n for n in MODEL_REGISTRY if n not in cifar) + [
        f"resnet<6n+2> (resnet{RESNET_DEPTHS[0]} .. resnet{RESNET_DEPTHS[-1]} but 50, e.g. resnet20, resnet56, "
        "resnet110)", f"{TIMM_PREFIX}<name> (any timm architecture)",
    ]


def create(arch: str, num_classes: int, in_channels: int, image_size: int, mean=None, std=None, **kwargs) -> Classifier:
    """Build the registered architecture ``arch`` (:data:`MODEL_REGISTRY`)."""
    mean = [0.0] * in_channels if mean is None else list(mean)
    std = [1.0] * in_channels if std is None else list(std)
    if arch.startswith(TIMM_PREFIX):
        return timm_classifier(arch[len(TIMM_PREFIX):], num_classes, in_channels, image_size, mean, std, **kwargs)
    if arch not in MODEL_REGISTRY:
        raise ValueError(f"unknown architecture {arch!r}; available: {', '.join(available())}")
    return MODEL_REGISTRY[arch](num_classes, in_channels, image_size, mean, std, **kwargs)


def is_known(arch: str) -> bool:
    """Whether ``arch`` names a registered architecture (``timm:<name>``: a timm one; imports timm)."""
    if arch.startswith(TIMM_PREFIX):
        return _timm().is_model(arch[len(TIMM_PREFIX):])
    return arch in MODEL_REGISTRY


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- build, save, load


def build_model(arch: str, data: Prepared, **kwargs) -> Classifier:
    c, h, _ = data.image_shape
    return create(arch, data.num_classes, c, h, data.mean, data.std, **kwargs)


def model_spec(arch: str, data: Prepared, **kwargs) -> dict:
    c, h, _ = data.image_shape
    return {"arch": arch, "num_classes": data.num_classes, "in_channels": c, "image_size": h, "kwargs": kwargs}


def save_model(path: str | Path, model: nn.Module, spec: dict, meta: dict) -> None:
    torch_save({"spec": spec, "state_dict": model.state_dict(), "meta": meta}, path)


def _model_error(path, why: str) -> ModelError:
    return ModelError(f"cannot use model {path}: {why}; delete it and rebuild it with `snakemake -f {path}`")


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[Classifier, dict]:
    """Rebuild a saved model (eval mode, on ``device``); returns ``(model, meta)``.

    A missing, damaged (truncated, garbled, a flipped bit: every member's CRC-32 is verified) or foreign
    file (not saved by :func:`save_model`) raises :class:`lspipe.base.errors.ModelError`, one line naming
    the file and the fix."""
    if not Path(path).is_file():
        raise ModelError(f"model {path} does not exist; build it with `snakemake {path}`")
    problem = zip_problem(path)  # the CRC-32 of every member, recorded by torch.save: torch.load checks none
    if problem:
        raise _model_error(path, f"it is damaged ({problem})")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # zip, pickle, EOF and torch's RuntimeErrors: a damaged or foreign file
        raise _model_error(path, "it is damaged or not a model file ("
                           + " ".join(f"{type(err).__name__}: {err}".split())[:200] + ")") from None
    if not (isinstance(blob, dict) and {"spec", "state_dict", "meta"} <= set(blob)):
        raise _model_error(path, "it is not a model saved by lspipe (no spec, state_dict and meta)")
    spec = blob["spec"]
    try:
        model = create(
            spec["arch"], spec["num_classes"], spec["in_channels"], spec["image_size"], **spec.get("kwargs", {})
        )
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise _model_error(path, "its weights do not fit its recorded architecture ("
                           + " ".join(f"{type(err).__name__}: {err}".split())[:200] + ")") from None
    return model.to(device).eval(), blob["meta"]


def _same_number(a, b) -> bool:
    try:
        return f"{float(a):g}" == f"{float(b):g}"
    except (TypeError, ValueError):
        return False


def _same_value(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    return float(a) == float(b)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def expectation_problems(meta: dict, expect: dict) -> list[str]:
    """How a model's recorded recipe, objective and seed differ from ``expect`` (what the config trains at its
    place: :meth:`lspipe.workflow.plan.Plan.model_identity`), one phrase per differing key. The recipe is
    compared without the settings that change no weight (:data:`lspipe.core.recipe.RUN_SETTINGS`). Keys a model
    saved by an older version does not record are not compared."""
    problems = []
    if "recipe" in expect and isinstance(meta.get("recipe"), dict):
        try:
            got, want = recipe_identity(meta["recipe"]), recipe_identity(expect["recipe"])
        except KeyError:  # an unknown recipe key: compare as recorded
            got, want = meta["recipe"], expect["recipe"]
        for key in sorted(set(got) | set(want)):
            if not _same_value(got.get(key), want.get(key)):
                problems.append(f"recipe {key} {_short(got.get(key))} where the config says {_short(want.get(key))}")
    if "objective" in expect and isinstance(meta.get("objective"), dict):
        got, want = meta["objective"], expect["objective"]
        for key in sorted(want):  # the parameters the config gives (a recorded one may add its defaults)
            if not _same_value(got.get(key), want[key]):
                problems.append(f"objective {key} {_short(got.get(key))} where the config says {_short(want[key])}")
    if "seed" in expect and meta.get("seed") is not None and not _same_value(meta.get("seed"), expect["seed"]):
        problems.append(f"seed {meta.get('seed')!r} where the config says {expect['seed']!r}")
    return problems


def identity_problems(path: str | Path, meta: dict, data=None, expect: dict | None = None) -> list[str]:
    """How the recorded spec ``meta`` of the model at ``path`` disagrees with what its place says.

    The place is the path laid out as :meth:`lspipe.base.paths.Paths.model` (dataset, arch, role, run)
    and the run name (:func:`lspipe.base.runs.parse_run`: alpha and seed, or the teacher's arch and
    alpha, the temperature and the seed of a distilled student); ``data`` (a prepared dataset the
    model is used with) adds its name and content digest (``data_digest``, recorded by every
    training command). Models saved before the digest was recorded are not checked against it.
    ``expect`` (what the config trains at that place: recipe, objective, seed) adds
    :func:`expectation_problems`. Returns one short phrase per disagreement (empty: the model is what
    its place says)."""
    problems = []

    def differ(key, recorded, expected):
        problems.append(f"{key} {recorded!r} where its place says {expected!r}")

    place = parse_model_path(path)
    if place:
        for key in ("dataset", "arch", "role", "run"):
            if str(meta.get(key)) != place[key]:
                differ(key, meta.get(key), place[key])
        run = parse_run(place["run"])
        if run is not None:
            if str(meta.get("seed")) != str(run["seed"]):
                differ("seed", meta.get("seed"), run["seed"])
            if "temperature" in run:  # a distilled student
                teacher_arch = meta.get("teacher_arch") or (parse_model_path(meta.get("teacher") or "") or {}).get("arch")
                if not meta.get("teacher"):
                    problems.append("no teacher (it was not distilled) where its place says a distilled student")
                else:
                    if teacher_arch is not None and teacher_arch != run["teacher_arch"]:
                        differ("teacher arch", teacher_arch, run["teacher_arch"])
                    if not _same_number(meta.get("teacher_alpha"), run["teacher_alpha"]):
                        differ("teacher alpha", meta.get("teacher_alpha"), run["teacher_alpha"])
                    if not _same_number(meta.get("temperature"), run["temperature"]):
                        differ("temperature", meta.get("temperature"), run["temperature"])
            else:  # trained alone: label smoothing alpha, or another objective (lspipe.core.losses)
                if meta.get("teacher"):
                    differ("teacher", meta.get("teacher"), None)
                if "alpha" in run and not _same_number(meta.get("alpha"), run["alpha"]):
                    differ("alpha", meta.get("alpha"), run["alpha"])
                if "alpha" not in run and meta.get("objective") is not None and \
                        {k: v for k, v in meta["objective"].items() if k in run["objective"]} != run["objective"]:
                    differ("objective", meta.get("objective"), run["objective"])
    if data is not None:
        name = data.meta.get("name")
        if name is not None and meta.get("dataset") != name:
            problems.append(f"dataset {meta.get('dataset')!r} where the data given is {name!r}")
        recorded = meta.get("data_digest")
        if recorded and data.digest and recorded != data.digest:
            problems.append(f"data digest {recorded} (trained on other images or splits) where the data given has "
                            f"{data.digest}")
    if expect:
        problems += expectation_problems(meta, expect)
    return problems


def check_identity(path: str | Path, meta: dict, data=None, what: str = "model", expect: dict | None = None) -> None:
    """Raise :class:`ModelError` (one line) when :func:`identity_problems` finds any."""
    problems = identity_problems(path, meta, data, expect)
    if problems:
        raise _model_error(path, f"this {what} is not the one its place, data and config say: it records "
                           + "; ".join(problems) + " (copied or moved here, or trained with other settings or on "
                           "data since rebuilt)")


def check_teacher(path: str | Path, meta: dict, data, student_runs=(), expect: dict | None = None) -> None:
    """The checks of a distillation teacher before a student learns from it: :func:`check_identity`
    (its place, the student's data and, with ``expect``, the recipe, objective and seed the config trains
    it with), a teacher's role, and what each student's run name
    (``kd-<teacher arch>-a<teacher alpha>-T<T>_s<seed>``) says of its teacher: arch, alpha, seed."""
    problems = identity_problems(path, meta, data, expect)
    if meta.get("role") not in (None, "teacher"):
        problems.append(f"role {meta.get('role')!r} where a teacher is needed")
    for run in student_runs:
        want = parse_run(run or "")
        if not want or "teacher_arch" not in want:
            continue
        if meta.get("arch") != want["teacher_arch"]:
            problems.append(f"arch {meta.get('arch')!r} where student {run} says {want['teacher_arch']!r}")
        if not _same_number(meta.get("alpha"), want["teacher_alpha"]):
            problems.append(f"alpha {meta.get('alpha')!r} where student {run} says {want['teacher_alpha']:g}")
        if str(meta.get("seed")) != str(want["seed"]):
            problems.append(f"seed {meta.get('seed')!r} where student {run} says {want['seed']}")
    if problems:
        raise _model_error(path, "this teacher is not the one its place, data, config and students say: it records "
                           + "; ".join(dict.fromkeys(problems)) + " (copied or moved here, or trained with other settings "
                           "or on data since rebuilt)")
