"""Training objectives.

* ``smoothed_targets``: the label-smoothed target ``y (1 - alpha) + alpha / K`` (alpha/K on every
  class, as ``F.cross_entropy(label_smoothing=alpha)`` does; not alpha/(K-1)).
* :class:`SmoothedCE`: cross-entropy against that target (alpha = 0 is plain cross-entropy).
* :class:`Distillation`: ``(1 - beta) H(y, p) + beta * s * H(p_teacher(T), p_student(T_s))`` in
  one of three explicit forms (:data:`FORMS`, config ``distillation[].form``):

  - ``teacher`` (the default): only the teacher's outputs are softened, the student stays at
    ``T_s = 1``, ``s = 1``. Its gradient does not shrink with T; on short schedules it trained the
    best students (53.5% vs 42.4% / 27.8% for the two others, see the README), hence the default;
  - ``slides``: the source slides' formula as written, both at T (``T_s = T``), ``s = 1``; the
    soft term's gradient shrinks like 1/T;
  - ``hinton``: both at T and the soft term multiplied by ``s = T^2`` (Hinton et al. 2015), which
    keeps the gradients' scale comparable across T.

  The hard term ``H(y, p)`` always uses the student at temperature 1.

Each objective is called as ``objective(logits, labels, inputs)``; ``inputs`` is the augmented
batch, which :class:`Distillation` feeds to its teacher (eval mode, no gradients), so targets
always match the exact augmented images the student sees. ``objective.uniform_loss(K)`` is its
loss for a uniform prediction (all logits equal), the reference of the training engine's
divergence bound (:data:`lspipe.engine.training.DIVERGENCE_FACTOR`): ``log K`` for cross-entropy with or
without label smoothing, ``((1 - beta) + beta * s) log K`` for distillation, whatever the targets.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lspipe.base.defaults import default


def smoothed_targets(labels: torch.Tensor, num_classes: int, alpha: float) -> torch.Tensor:
    """Label-smoothed one-hot targets: ``onehot * (1 - alpha) + alpha / K``."""
    onehot = F.one_hot(labels.long(), num_classes).float()
    return onehot * (1.0 - alpha) + alpha / num_classes


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``H(target, softmax(logits)) = -sum_k t_k log p_k``."""
    return -(target_probs * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def freeze(module: nn.Module) -> nn.Module:
    """Put a teacher in eval mode with gradients off (it only supplies targets)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class SmoothedCE(nn.Module):
    def __init__(self, alpha: float = 0.0):
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"label smoothing alpha must be in [0, 1), got {alpha}")
        self.alpha = float(alpha)

    def forward(self, logits, labels, inputs=None):
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.alpha)

    def uniform_loss(self, num_classes: int) -> torch.Tensor:
        """The loss of a uniform prediction: ``log K`` (any target distribution)."""
        return torch.tensor(math.log(num_classes))


FORMS = ("teacher", "slides", "hinton")


def check_form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(f"unknown distillation form {form!r} (config key distillation[].form); allowed: {', '.join(FORMS)}")
    return form


def form_factors(form: str, temperature: float) -> tuple[float, float]:
    """``(student temperature T_s, soft-term scale s)`` of a distillation ``form`` at teacher temperature T."""
    check_form(form)
    if form == "teacher":
        return 1.0, 1.0
    if form == "slides":
        return float(temperature), 1.0
    return float(temperature), float(temperature) ** 2


class Distillation(nn.Module):
    def __init__(self, teacher: nn.Module, temperature: float = 1.0, beta: float = default("distillation[].beta"),
                 form: str = default("distillation[].form")):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"distillation temperature must be > 0, got {temperature}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"distillation beta must be in [0, 1], got {beta}")
        self.teacher = freeze(teacher)
        self.temperature, self.beta, self.form = float(temperature), float(beta), check_form(form)

    def train(self, mode: bool = True):  # the teacher always stays in eval mode
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def teacher_probs(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.teacher(inputs).float() / self.temperature, dim=-1)

    def forward(self, logits, labels, inputs):
        return distillation_loss(
            logits, labels, self.teacher_probs(inputs), self.temperature, self.beta, self.form
        )

    def uniform_loss(self, num_classes: int) -> torch.Tensor:
        """The loss of a uniform prediction: ``((1 - beta) + beta * s) log K`` (s of the form)."""
        _, scale = form_factors(self.form, self.temperature)
        return torch.tensor(((1.0 - self.beta) + self.beta * scale) * math.log(num_classes))


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_probs: torch.Tensor,
    temperature: float,
    beta: float,
    form: str = default("distillation[].form"),
) -> torch.Tensor:
    """``(1 - beta) H(y, p) + beta * s * H(p_teacher(T), p_student(T_s))``.

    ``form`` (:func:`form_factors`): ``teacher`` ``T_s = 1, s = 1``; ``slides`` ``T_s = T, s = 1``;
    ``hinton`` ``T_s = T, s = T^2``.
    """
    soft_t, scale = form_factors(form, temperature)
    loss = beta * scale * soft_cross_entropy(student_logits / soft_t, teacher_probs)
    if beta < 1.0:
        loss = loss + (1.0 - beta) * F.cross_entropy(student_logits.float(), labels)
    return loss
