"""Grid-fused training: G models of one architecture trained as one network on the same batches.

Teachers (or students) that differ only in label smoothing ``alpha`` (or seed) are small on a
modern GPU: one ResNet-56 step at batch 128 leaves most of the chip idle. Fusing them turns G
small kernels into one G-times wider kernel:

* every ``Conv2d(C_in, C_out, groups=g)`` becomes ``Conv2d(G*C_in, G*C_out, groups=G*g)``: member
  m owns channels ``[m*C, (m+1)*C)`` of every activation ("member-major" channels);
* ``BatchNorm2d(C)`` becomes ``BatchNorm2d(G*C)``, per member by construction (statistics are per
  channel);
* ``Linear(I, O)`` becomes :class:`GroupedLinear` (weights ``G x O x I``, one batched matmul);
* ``LocalResponseNorm`` (AlexNet), which mixes neighbouring channels, runs on a ``(B*G) x C``
  view so it never mixes channels of two members; the option-A ResNet shortcut zero-pads each
  member's channels separately;
* ReLU, pooling and flattening act per channel and stay as they are;
* the input images are normalised with each member's statistics and repeated G times, so every
  member sees exactly the batch it would see alone; the logits are ``B x G x K``. Members may also
  get batches of their own, stacked along channels (``B x (G*C) x H x W``, :func:`stack_batches`):
  members of different seeds, each with its own batch stream (:mod:`lspipe.engine.cross_seed`).

The objective is the one every group trains with (:class:`lspipe.core.losses.Objective`: one
loss per member, each member's kind and parameters its own);
:func:`lspipe.engine.training.fit` minimises their sum (each member's parameters get exactly their own
gradient), clips gradients per member (:meth:`FusedClassifier.clip_grad_norm_`) and writes one
metrics CSV per member; :func:`lspipe.engine.training.train_group` (``fuse=True``) builds and
splits the members. Weight decay, momentum and the learning rate act element-wise, so SGD is
per member too. Members are initialised exactly as their single runs (``torch.manual_seed(seed);
build_model(...)``) and copied into the fused network (:func:`fuse`); at the end each member is
split out (:meth:`FusedClassifier.member_state_dict`) and saved as an ordinary checkpoint, with
the same state_dict keys as ``models.create(arch, ...)``.

Equivalence with separate runs: the members (all of one seed) train on the very batches and
augmentations their separate runs would see, so the fused result equals the separate runs up to
floating-point rounding (grouped vs. dense kernels).
"""

from __future__ import annotations

import copy
import itertools
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lspipe.core import models as M

# Modules that act on each channel (or element) separately: correct on member-major channels as is.
_PER_CHANNEL = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity)
# Containers whose own forward only chains children, adds tensors or pools/flattens from dim 1 on.
# A new architecture's container must be checked (and tested in tests/test_fused.py) before it is
# added here; unknown modules are refused rather than fused wrongly.
FUSABLE_CONTAINERS: tuple[type, ...] = (nn.Sequential, M.BasicBlock, M.ResNetBody, M.AlexNetBody)


class FuseError(ValueError):
    """The models cannot be fused (unknown layer type, different architectures, ...)."""


class GroupedLinear(nn.Module):
    """G independent ``Linear(in_features, out_features)`` on member-major features ``B x (G*in)``."""

    def __init__(self, members: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.weight = nn.Parameter(torch.empty(members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(members, out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        xg = x.reshape(b, self.members, self.in_features).transpose(0, 1)  # G x B x in
        w = self.weight.transpose(1, 2)  # G x in x out
        out = torch.bmm(xg, w) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), xg, w)
        return out.transpose(0, 1).reshape(b, self.members * self.out_features)

    def extra_repr(self) -> str:
        return f"members={self.members}, in_features={self.in_features}, out_features={self.out_features}"


def _keep_channels_last(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        return out.contiguous(memory_format=torch.channels_last)
    return out


class FusedLocalResponseNorm(nn.Module):
    """``LocalResponseNorm`` applied to each member's channels alone: in float32 PyTorch's on a
    ``(B*G) x C`` view, in bf16 one grouped band convolution (:func:`lspipe.core.models.local_response_norm`)."""

    def __init__(self, members: int, lrn: nn.LocalResponseNorm):
        super().__init__()
        self.members, self.lrn = members, copy.deepcopy(lrn)
        self._band: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.lrn
        return M.local_response_norm(x, n.size, n.alpha, n.beta, n.k, groups=self.members, cache=self._band)


class FusedShortcutA(nn.Module):
    """The option-A ResNet shortcut (subsample, zero-pad new channels), per member."""

    def __init__(self, members: int, shortcut: M._ShortcutA):
        super().__init__()
        self.members, self.stride, self.pad = members, shortcut.stride, shortcut.pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        src = x
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            b, gc, h, w = x.shape
            x = F.pad(x.reshape(b, self.members, gc // self.members, h, w),
                      (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
            x = _keep_channels_last(x.reshape(b, -1, h, w), src)
        return x


def _fuse_structure(module: nn.Module, members: int, where: str = "body") -> nn.Module:
    """The G-wide counterpart of ``module`` (a private copy: containers are modified in place).

    Parameters of the new layers are uninitialised; :func:`fuse` fills them.
    """
    g = members
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise FuseError(f"{where}: only zero-padded convolutions can be fused")
        return nn.Conv2d(g * module.in_channels, g * module.out_channels, module.kernel_size, module.stride,
                         module.padding, module.dilation, g * module.groups, module.bias is not None)
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(g * module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
    if isinstance(module, nn.Linear):
        return GroupedLinear(g, module.in_features, module.out_features, module.bias is not None)
    if isinstance(module, nn.LocalResponseNorm):
        return FusedLocalResponseNorm(g, module)
    if isinstance(module, M._ShortcutA):
        return FusedShortcutA(g, module)
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1:
            raise FuseError(f"{where}: only Flatten(start_dim=1) keeps members' features apart")
        return copy.deepcopy(module)
    if isinstance(module, _PER_CHANNEL):
        return copy.deepcopy(module)
    if type(module) in FUSABLE_CONTAINERS:
        if any(True for _ in itertools.chain(module.parameters(False), module.buffers(False))):
            raise FuseError(f"{where}: container {type(module).__name__} holds tensors of its own")
        for name, child in list(module._modules.items()):
            module._modules[name] = _fuse_structure(child, g, f"{where}.{name}")
        return module
    raise FuseError(
        f"{where}: cannot fuse a {type(module).__name__}; fusable: convolutions, BatchNorm2d, Linear, "
        f"LocalResponseNorm, per-channel layers and the containers {[c.__name__ for c in FUSABLE_CONTAINERS]}"
    )


class FusedClassifier(nn.Module):
    """G members of one :class:`lspipe.core.models.Classifier` architecture in one network.

    ``forward(x)`` -> logits ``B x G x K``; ``forward(x, features=True)`` -> (logits, penultimate
    ``B x G x F``). Every tensor of the state dict is the members' tensors concatenated along dim 0
    (``cat0``), stacked on a new dim 0 (``stack``: grouped linear layers), concatenated along dim 1
    (``cat1``: the ``1 x C x 1 x 1`` normalisation statistics) or shared (``shared``: BatchNorm's
    step counter); :attr:`layouts` records which, and the keys are those of a single model.
    """

    def __init__(self, template: M.Classifier, members: int):
        super().__init__()
        if not isinstance(template, M.Classifier):
            raise FuseError(f"only lspipe.core.models.Classifier models can be fused, got {type(template).__name__}")
        if members < 1:
            raise FuseError("a fused model needs at least one member")
        self.num_members = members
        self.register_buffer("mean", template.mean.detach().repeat(1, members, 1, 1).clone())
        self.register_buffer("std", template.std.detach().repeat(1, members, 1, 1).clone())
        self.body = _fuse_structure(copy.deepcopy(template.body), members)
        self.classifier = _fuse_structure(template.classifier, members, "classifier")
        self.layouts: dict[str, str] = {"mean": "cat1", "std": "cat1"}
        for name, mod in self.named_modules():
            for pname, t in itertools.chain(mod.named_parameters(recurse=False), mod.named_buffers(recurse=False)):
                key = f"{name}.{pname}" if name else pname
                if key not in self.layouts:
                    self.layouts[key] = "stack" if isinstance(mod, GroupedLinear) else ("shared" if t.dim() == 0 else "cat0")
        for key, _ in self.named_parameters():
            assert self.layouts[key] in ("cat0", "stack"), key  # clip_grad_norm_ relies on member-major dim 0

    # -- forward
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """One batch ``B x C x H x W`` (every member sees it: repeated G times), or the members' own
        batches stacked along channels ``B x (G*C) x H x W`` (member-major, :func:`stack_batches`),
        normalised with each member's statistics."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if x.shape[1] != self.mean.shape[1]:  # one batch for every member
            if x.shape[1] * self.num_members != self.mean.shape[1]:
                raise FuseError(f"a {self.num_members}-member model takes {self.mean.shape[1] // self.num_members} "
                                f"channels (one batch) or {self.mean.shape[1]} (each member's own), got {x.shape[1]}")
            x = x.repeat(1, self.num_members, 1, 1)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor, features: bool = False):
        h = self.body(self.normalize(x))
        logits = self.classifier(h).view(len(h), self.num_members, -1)
        return (logits, h.reshape(len(h), self.num_members, -1)) if features else logits

    def dense_parameters(self) -> list[nn.Parameter]:
        """Weights of the hidden (grouped) fully connected layers, without the logit layer, as
        ``Classifier.dense_parameters``."""
        return [m.weight for m in self.body.modules() if isinstance(m, GroupedLinear)]

    # -- per-member views of the parameters
    def _member_view(self, key: str, t: torch.Tensor) -> torch.Tensor:
        """``t`` (fused) as ``G x ...`` with member g's tensor at index g (a copy for ``cat1``)."""
        g, layout = self.num_members, self.layouts[key]
        if layout == "stack":
            return t
        if layout == "cat0":
            return t.reshape(g, t.shape[0] // g, *t.shape[1:])
        if layout == "cat1":
            return t.reshape(t.shape[0], g, t.shape[1] // g, *t.shape[2:]).transpose(0, 1)
        return t.unsqueeze(0).expand(g, *t.shape)  # shared

    def member_state_dict(self, member: int) -> dict[str, torch.Tensor]:
        """Member ``member``'s state dict, with the keys and shapes of a single model."""
        if not 0 <= member < self.num_members:
            raise IndexError(f"member {member} of a {self.num_members}-member model")
        return {k: self._member_view(k, t.detach())[member].clone().contiguous()
                for k, t in self.state_dict().items()}

    def load_members(self, states: Sequence[dict[str, torch.Tensor]]) -> None:
        """Copy G single-model state dicts (member order) into this model."""
        if len(states) != self.num_members:
            raise FuseError(f"{len(states)} state dicts for a {self.num_members}-member model")
        own = self.state_dict()
        for i, s in enumerate(states):
            if set(s) != set(own):
                raise FuseError(f"member {i}'s state_dict keys differ from the fused architecture's "
                                f"(missing {sorted(set(own) - set(s))[:5]}, extra {sorted(set(s) - set(own))[:5]})")
        with torch.no_grad():
            for key, t in own.items():
                layout, vals = self.layouts[key], [s[key].to(t.device) for s in states]
                expected = tuple(self._member_view(key, t).shape[1:])
                for i, v in enumerate(vals):
                    if tuple(v.shape) != expected:
                        raise FuseError(f"member {i}: {key!r} has shape {tuple(v.shape)}, expected {expected}")
                if layout == "shared":
                    if any(not torch.equal(v, vals[0]) for v in vals[1:]):
                        raise FuseError(f"members disagree on the shared buffer {key!r}")
                    t.copy_(vals[0])
                else:
                    t.copy_(torch.stack(vals) if layout == "stack" else torch.cat(vals, dim=1 if layout == "cat1" else 0))

    # -- per-member gradient clipping (lspipe.engine.training.fit calls this when the recipe clips)
    def member_grads(self) -> list[list[torch.Tensor]]:
        """Each member's gradient slices (views of the fused gradients, member-major dim 0)."""
        out: list[list[torch.Tensor]] = [[] for _ in range(self.num_members)]
        for p in self.parameters():
            if p.grad is not None:
                for m, part in enumerate(p.grad.chunk(self.num_members, 0)):
                    out[m].append(part)
        return out

    @torch.no_grad()
    def member_grad_norms(self) -> torch.Tensor:
        """The 2-norm of each member's full gradient (a ``G`` vector)."""
        return member_grad_norms(self.member_grads())

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_`` for each member separately; returns the G norms."""
        return clip_member_grads_(self.member_grads(), max_norm)


@torch.no_grad()
def member_grad_norms(grads: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """The 2-norm of each member's gradient (``grads[m]``: member m's tensors; equal counts): one
    ``_foreach_norm`` over every tensor, then the norm of each member's norms, as
    ``torch.nn.utils.clip_grad_norm_`` computes its total norm."""
    flat = [g for member in grads for g in member]
    if not flat:
        return torch.zeros(len(grads))
    norms = torch.stack(torch._foreach_norm(flat, 2.0))
    if len({len(member) for member in grads}) == 1:  # members of one architecture: a G x P matrix
        return torch.linalg.vector_norm(norms.view(len(grads), -1), 2.0, dim=1)
    parts = norms.split([len(member) for member in grads])
    return torch.stack([torch.linalg.vector_norm(p, 2.0) for p in parts])


@torch.no_grad()
def clip_member_grads_(grads: Sequence[Sequence[torch.Tensor]], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_(grads[m], max_norm)`` for every member m at once; returns the
    G norms. Operations: one ``_foreach_norm``, one stack, one norm of norms, the coefficients
    (``max_norm / (norm + 1e-6)`` clamped at 1, as torch's) and one ``_foreach_mul_`` per member,
    about 5 + G in all where a loop over the parameters takes several per tensor. The same numbers
    as ``clip_grad_norm_`` per member (the norm of a member's norms is the row of a batched norm;
    bit for bit on the CPU, tested)."""
    norms = member_grad_norms(grads)
    if not any(len(g) for g in grads):
        return norms
    coef = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    for m, member in enumerate(grads):
        torch._foreach_mul_(list(member), coef[m])
    return norms


def stack_batches(batches: Sequence[torch.Tensor], repeats: int = 1) -> torch.Tensor:
    """The members' own batches (each ``B x C x H x W``) as one ``B x (G*C) x H x W`` input of a
    :class:`FusedClassifier` (member-major channels: member m's batch in channels ``[m*C, (m+1)*C)``);
    with ``repeats`` r each batch feeds r consecutive members (G = r x len(batches))."""
    return torch.cat([b for b in batches for _ in range(repeats)], dim=1)


def fuse(models: Sequence[M.Classifier]) -> FusedClassifier:
    """One :class:`FusedClassifier` holding copies of ``models`` (same architecture), member order kept."""
    models = list(models)
    if not models:
        raise FuseError("nothing to fuse")
    ref = models[0].state_dict()
    for i, m in enumerate(models[1:], 1):
        s = m.state_dict()
        if type(m) is not type(models[0]) or set(s) != set(ref) or any(s[k].shape != ref[k].shape for k in ref):
            raise FuseError(f"model {i} has another architecture than model 0; only identical architectures fuse")
    first = next(models[0].parameters())
    fused = FusedClassifier(models[0], len(models)).to(device=first.device, dtype=first.dtype)
    fused.load_members([m.state_dict() for m in models])
    return fused
