"""The engine's sub-commands: ``train``, ``train-fused``, ``train-lockstep`` and ``dump-activations``.

Their options live here, apart from the code they run, because that code imports torch (3-4 s):
this module imports no torch, so ``lspipe --help`` and ``lspipe <command> --help`` start fast.
Each command's function imports its module (:mod:`lspipe.engine.training`,
:mod:`lspipe.engine.fused`, :mod:`lspipe.engine.lockstep`, :mod:`lspipe.engine.activations`) when
it runs. The options every training command shares are written once
(:func:`add_training_inputs`, :func:`add_group_outputs`, :func:`add_run_options`).
"""

from __future__ import annotations

import argparse

from lspipe.base import defaults
from lspipe.base.args import json_arg

FORMS = defaults.node("distillation[].form")["enum"]  # the distillation loss forms (lspipe.core.losses.FORMS)


# --------------------------------------------------------------------------- shared options


def add_training_inputs(s: argparse.ArgumentParser) -> None:
    """Options every training command takes: the data, the architecture, the recipe, the seed."""
    s.add_argument("--data", required=True)
    s.add_argument("--arch", required=True)
    s.add_argument("--recipe", type=json_arg, required=True, help="the config's recipes.<name> entry as JSON")


def add_group_outputs(s: argparse.ArgumentParser, per: str) -> None:
    """Outputs of a job that trains several models at once (train-fused, train-lockstep): one each ``per``."""
    s.add_argument("--runs", nargs="+", default=None, help="run names stored in the models' metadata")
    s.add_argument("--out", nargs="+", required=True, help=f"one model.pt per {per}")
    s.add_argument("--metrics", nargs="+", required=True, help=f"one metrics CSV per {per}")
    s.add_argument("--checkpoint", default=None, help="resumable checkpoint of the job (default: beside the first --out)")


def add_run_options(s: argparse.ArgumentParser) -> None:
    """Options every training command takes: device, threads, progress bar, time-boxed runs."""
    s.add_argument("--device", default=defaults.default("device"))
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=defaults.default("progress"))
    s.add_argument("--stop-after-epochs", type=int, default=None,
                   help="stop (resumably) after this many epochs in this invocation")


# --------------------------------------------------------------------------- the commands (torch when they run)


def _train(a) -> None:
    from lspipe.engine.training import cmd_train  # torch: only when a model trains

    cmd_train(a)


def _train_fused(a) -> None:
    from lspipe.engine.fused import cmd_train_fused  # torch: only when a model trains

    cmd_train_fused(a)


def _train_lockstep(a) -> None:
    from lspipe.engine.lockstep import cmd_train_lockstep  # torch: only when a model trains

    cmd_train_lockstep(a)


def _dump(a) -> None:
    from lspipe.engine.activations import cmd_dump  # torch: only when a model runs

    cmd_dump(a)


def add_cli(sub) -> None:
    """``lspipe train``, ``train-fused``, ``train-lockstep`` and ``dump-activations``."""
    s = sub.add_parser("train", help="train a teacher or a student")
    add_training_inputs(s)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--alpha", type=float, default=0.0, help="label smoothing (when not distilling)")
    s.add_argument("--role", choices=["teacher", "student"], default="teacher")
    s.add_argument("--run", default=None, help="run name stored in the model's metadata")
    s.add_argument("--teacher", default=None, help="teacher model.pt: distil from it")
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--beta", type=float, default=defaults.default("distillation[].beta"))
    s.add_argument("--form", choices=FORMS, default=defaults.default("distillation[].form"),
                   help="distillation form: teacher (only the teacher at T; default), slides (student at T too), "
                        "hinton (student at T, soft term x T^2)")
    s.add_argument("--probe", type=json_arg, default=None, help="mutual-information probe settings as JSON")
    s.add_argument("--probe-out", default=None,
                   help="probe trace (default: probe.h5 next to --out); without --probe, a placeholder is written there")
    s.add_argument("--out", required=True, help="model.pt")
    s.add_argument("--metrics", required=True, help="per-epoch metrics CSV")
    add_run_options(s)
    s.set_defaults(func=_train)

    s = sub.add_parser("train-fused", help="train several teachers (one per alpha, same seed) as one fused model")
    add_training_inputs(s)
    s.add_argument("--seed", type=int, required=True, help="seed of every member (initialisation and batches)")
    s.add_argument("--alphas", type=float, nargs="+", required=True, help="label smoothing of each member")
    s.add_argument("--role", choices=["teacher", "student"], default="teacher")
    add_group_outputs(s, "alpha")
    add_run_options(s)
    s.set_defaults(func=_train_fused)

    s = sub.add_parser("train-lockstep", help="train several students of one seed (and one teacher) in lockstep")
    add_training_inputs(s)
    s.add_argument("--seed", type=int, required=True, help="seed of every student (initialisation and batches)")
    s.add_argument("--alphas", type=float, nargs="+", default=None, help="student baselines: label smoothing of each")
    s.add_argument("--teacher", default=None, help="teacher model.pt every student is distilled from")
    s.add_argument("--temperatures", type=float, nargs="+", default=None, help="distilled students: T of each")
    s.add_argument("--beta", type=float, default=defaults.default("distillation[].beta"))
    s.add_argument("--form", choices=FORMS, default=defaults.default("distillation[].form"),
                   help="distillation loss form (see lspipe train --help)")
    s.add_argument("--fuse", action=argparse.BooleanOptionalAction,
                   default=defaults.default("distillation[].fuse_students"),
                   help="run the students as one fused network (lspipe.engine.fused)")
    add_group_outputs(s, "student")
    add_run_options(s)
    s.set_defaults(func=_train_lockstep)

    s = sub.add_parser("dump-activations", aliases=["dump"], help="dump penultimate activations and logits to HDF5")
    add_dump_options(s)
    s.set_defaults(func=_dump)


def add_dump_options(s: argparse.ArgumentParser) -> None:
    """The options of an activation dump (``dump-activations``; also ``analyse-model``, which dumps,
    evaluates and calibrates a model in one job: lspipe.experiments.per_model)."""
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True, help="the dump (HDF5)")
    s.add_argument("--max-train", type=int, default=defaults.default("dump.max_train"), help="0: all")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--chunk-rows", type=int, default=defaults.default("dump.chunk_rows"))
    s.add_argument("--compression", default=defaults.default("dump.compression"))
    s.add_argument("--device", default=defaults.default("device"))
    s.add_argument("--threads", type=int, default=None)
