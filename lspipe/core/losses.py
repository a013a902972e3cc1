"""Training objectives: values in the config, one definition per kind, one registry.

An objective is a config value, a dict with a ``kind`` and that kind's parameters::

    {"kind": "ls", "alpha": 0.1}                                    label-smoothed cross-entropy
    {"kind": "kd", "teacher": "<teacher model.pt>", "T": 4, "beta": 1, "form": "teacher"}   distillation
    {"kind": "confidence_penalty", "beta": 0.5}                     the confidence penalty

Each kind is written once, as a subclass of :class:`Kind` registered under its name
(:func:`register`, :data:`KINDS`; used by the value's ``kind``, as torchdistill's registries are):
its parameters and their checks (:meth:`Kind.check`, one :class:`~lspipe.base.errors.ConfigError`
naming the key), its loss for one member (:meth:`Kind.loss`), its loss for a uniform prediction
(:meth:`Kind.uniform_loss`, the reference of the training engine's divergence bound,
:data:`lspipe.engine.training.DIVERGENCE_FACTOR`). Run names and table labels are derived from the
value itself, torch-free, by :func:`lspipe.base.runs.objective_run` and
:func:`lspipe.base.runs.objective_label`, so a new kind needs nothing there.

:class:`Objective` is what the training engine minimises, for any group of G members trained on one
batch stream (a single run is G = 1, lockstep and fused groups G > 1, members of different kinds
allowed): logits ``B x G x K`` -> the G members' losses. Member g's loss is its kind's loss on
``logits[:, g]``, exactly the computation of a run of its own, so single and lockstep runs give the
same bits; every teacher runs once per batch however many members learn from it.

The kinds:

* ``ls``: cross-entropy against the label-smoothed target ``y (1 - alpha) + alpha / K``
  (:func:`smoothed_targets`; alpha/K on every class, as ``F.cross_entropy(label_smoothing=alpha)``
  computes it, which is what the loss calls); alpha = 0 is plain cross-entropy. Uniform prediction:
  ``log K``.
* ``kd``: ``(1 - beta) H(y, p) + beta * s * H(p_teacher(T), p_student(T_s))`` in one of three
  explicit forms (:data:`FORMS`, config ``distillation[].form``):

  - ``teacher`` (the default): only the teacher's outputs are softened, the student stays at
    ``T_s = 1``, ``s = 1``. Its gradient does not shrink with T; on short schedules it trained the
    best students (53.5% vs 42.4% / 27.8% for the two others, docs/design.md, "Distillation (Fig. 5)"), hence the default;
  - ``slides``: the source slides' formula as written, both at T (``T_s = T``), ``s = 1``; the
    soft term's gradient shrinks like 1/T;
  - ``hinton``: both at T and the soft term multiplied by ``s = T^2`` (Hinton et al. 2015), which
    keeps the gradients' scale comparable across T.

  The hard term ``H(y, p)`` always uses the student at temperature 1. The teacher (eval mode, no
  gradients) sees the augmented batch the student sees. Uniform prediction:
  ``((1 - beta) + beta * s) log K``, whatever the targets.
* ``confidence_penalty``: ``CE(y, p) - beta H(p)`` (Pereyra et al. 2017), the regulariser most
  often set beside label smoothing; beta in [0, 1). Uniform prediction: ``(1 - beta) log K``.

Adding a kind: subclass :class:`Kind` (``name``, ``params`` with their defaults, ``check``,
``loss``, ``uniform_loss``), decorate it with :func:`register`, and allow it in the schema
(``$defs/objective``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lspipe.base.defaults import default
from lspipe.base.errors import ConfigError
from lspipe.base.runs import fmt


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


FORMS = ("teacher", "slides", "hinton")


def check_form(form: str) -> str:
    if form not in FORMS:
        raise ConfigError(f"unknown distillation form {form!r} (config key distillation[].form); allowed: {', '.join(FORMS)}")
    return form


def form_factors(form: str, temperature: float) -> tuple[float, float]:
    """``(student temperature T_s, soft-term scale s)`` of a distillation ``form`` at teacher temperature T."""
    check_form(form)
    if form == "teacher":
        return 1.0, 1.0
    if form == "slides":
        return float(temperature), 1.0
    return float(temperature), float(temperature) ** 2


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


# --------------------------------------------------------------------------- the kinds and their registry


class Kind:
    """One kind of objective. Subclasses set :attr:`name` and :attr:`params` (parameter -> default,
    ``None``: required) and write :meth:`check`, :meth:`loss`, :meth:`uniform_loss`."""

    name: str = ""
    params: dict[str, Any] = {}
    teacher: bool = False  # whether the value names a teacher (parameter "teacher") whose logits the loss needs

    def check(self, value: dict, where: str) -> dict:
        """``value`` with its defaults filled in and every parameter checked (:class:`ConfigError`
        naming ``where.<key>``)."""
        return value

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, value: dict,
             teacher_logits: torch.Tensor | None) -> torch.Tensor:
        """One member's loss (a scalar) from its logits ``B x K`` (and its teacher's, ``B x K``)."""
        raise NotImplementedError

    def uniform_loss(self, value: dict, num_classes: int) -> float:
        """The loss of a uniform prediction (all logits equal)."""
        raise NotImplementedError


KINDS: dict[str, Kind] = {}


def register(cls: type[Kind]) -> type[Kind]:
    """Class decorator: register a :class:`Kind` under its ``name`` (the objective's ``kind``)."""
    if cls.name in KINDS:
        raise ValueError(f"objective kind {cls.name!r} registered twice")
    KINDS[cls.name] = cls()
    return cls


def kind_of(value: Mapping, where: str = "objective") -> Kind:
    if not isinstance(value, Mapping) or "kind" not in value:
        raise ConfigError(f"{where} must be a mapping with a 'kind' ({', '.join(KINDS)}), got {value!r}")
    if value["kind"] not in KINDS:
        raise ConfigError(f"{where}.kind {value['kind']!r} is not an objective; known kinds: {', '.join(KINDS)}")
    return KINDS[value["kind"]]


def check(value: Mapping, where: str = "objective") -> dict:
    """An objective value checked and completed with its kind's defaults: unknown keys, missing
    required ones and bad values raise one :class:`ConfigError` naming ``where.<key>``."""
    kind = kind_of(value, where)
    extra = sorted(set(value) - set(kind.params) - {"kind"})
    if extra:
        raise ConfigError(f"{where}: {kind.name} objectives take {', '.join(kind.params)}; unknown key(s) {', '.join(extra)}")
    missing = [k for k, d in kind.params.items() if d is None and k not in value]
    if missing:
        raise ConfigError(f"{where}: a {kind.name} objective needs {', '.join(missing)}")
    full = {"kind": kind.name, **{k: value.get(k, d) for k, d in kind.params.items()}}
    return kind.check(full, where)


def number(value: dict, key: str, where: str, *, low: float, high: float, low_open: bool = False,
           high_open: bool = False) -> float:
    """``value[key]`` as a float in the given interval, or a :class:`ConfigError` naming ``where.key``."""
    v = value[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
            (v <= low if low_open else v < low) or (v >= high if high_open else v > high):
        interval = f"{'(' if low_open else '['}{fmt(low)}, {fmt(high) if math.isfinite(high) else 'inf'}{')' if high_open else ']'}"
        raise ConfigError(f"{where}.{key} must be a number in {interval}, got {v!r}")
    return float(v)


@register
class LabelSmoothing(Kind):
    """Label-smoothed cross-entropy, ``F.cross_entropy(logits, y, label_smoothing=alpha)``."""

    name, params = "ls", {"alpha": 0.0}

    def check(self, value, where):
        return {**value, "alpha": number(value, "alpha", where, low=0.0, high=1.0, high_open=True)}

    def loss(self, logits, labels, value, teacher_logits):
        return F.cross_entropy(logits.float(), labels, label_smoothing=value["alpha"])

    def uniform_loss(self, value, num_classes):
        return math.log(num_classes)  # any target distribution


@register
class Distillation(Kind):
    """Knowledge distillation from a teacher at temperature T (:func:`distillation_loss`)."""

    name, teacher = "kd", True
    params = {"teacher": None, "T": 1.0, "beta": default("distillation[].beta"), "form": default("distillation[].form")}

    def check(self, value, where):
        if not isinstance(value["teacher"], str) or not value["teacher"]:
            raise ConfigError(f"{where}.teacher must name the teacher (its model.pt), got {value['teacher']!r}")
        try:
            check_form(value["form"])
        except ConfigError as err:
            raise ConfigError(f"{where}.form: {err}") from None
        return {**value, "T": number(value, "T", where, low=0.0, high=math.inf, low_open=True),
                "beta": number(value, "beta", where, low=0.0, high=1.0)}

    def loss(self, logits, labels, value, teacher_logits):
        probs = F.softmax(teacher_logits.float() / value["T"], dim=-1)
        return distillation_loss(logits, labels, probs, value["T"], value["beta"], value["form"])

    def uniform_loss(self, value, num_classes):
        _, scale = form_factors(value["form"], value["T"])
        return ((1.0 - value["beta"]) + value["beta"] * scale) * math.log(num_classes)


@register
class ConfidencePenalty(Kind):
    """The confidence penalty (Pereyra et al. 2017, "Regularizing neural networks by penalizing
    confident output distributions"): cross-entropy minus beta times the entropy of the prediction,
    ``CE(y, p) - beta H(p)``, ``H(p) = -sum_k p_k log p_k``, both averaged over the batch. Where label
    smoothing pulls the prediction towards the uniform distribution through the target, the penalty
    rewards a high-entropy prediction directly. beta in [0, 1): the loss of a uniform prediction,
    ``(1 - beta) log K``, is then positive, as the divergence bound needs."""

    name, params = "confidence_penalty", {"beta": None}

    def check(self, value, where):
        return {**value, "beta": number(value, "beta", where, low=0.0, high=1.0, high_open=True)}

    def loss(self, logits, labels, value, teacher_logits):
        logp = F.log_softmax(logits.float(), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1).mean()
        return F.nll_loss(logp, labels) - value["beta"] * entropy

    def uniform_loss(self, value, num_classes):
        return (1.0 - value["beta"]) * math.log(num_classes)


# --------------------------------------------------------------------------- a group's objective


class Objective(nn.Module):
    """The objective of G members trained on one batch stream: logits ``B x G x K`` -> G losses.

    ``values`` are the members' objective values (any kinds); ``teachers`` maps each teacher named
    by a value (its ``teacher``) to its model, which stays in eval mode without gradients and runs
    once per batch however many members learn from it.
    """

    def __init__(self, values: Sequence[Mapping], teachers: Mapping[str, nn.Module] | None = None):
        super().__init__()
        if not values:
            raise ConfigError("an objective needs at least one member")
        self.values = [check(v, f"objectives[{i}]") for i, v in enumerate(values)]
        self.kinds = [KINDS[v["kind"]] for v in self.values]
        names = list(dict.fromkeys(v["teacher"] for v, k in zip(self.values, self.kinds) if k.teacher))
        teachers = teachers or {}
        if missing := [n for n in names if n not in teachers]:
            raise ConfigError(f"no teacher model given for {', '.join(map(repr, missing))}")
        self.teachers = freeze(nn.ModuleList([teachers[n] for n in names]))
        self.which = [names.index(v["teacher"]) if k.teacher else None for v, k in zip(self.values, self.kinds)]

    def __len__(self) -> int:
        return len(self.values)

    def train(self, mode: bool = True):  # the teachers always stay in eval mode
        super().train(mode)
        self.teachers.eval()
        return self

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = [t(inputs) for t in self.teachers]
        return torch.stack([
            kind.loss(logits[:, g], labels, value, None if w is None else teacher_logits[w])
            for g, (kind, value, w) in enumerate(zip(self.kinds, self.values, self.which))
        ])

    def uniform_loss(self, num_classes: int) -> torch.Tensor:
        """Each member's loss for a uniform prediction (a ``G`` vector)."""
        return torch.tensor([k.uniform_loss(v, num_classes) for k, v in zip(self.kinds, self.values)],
                            dtype=torch.float32)
