"""The engine's sub-commands: ``train`` (aliases ``train-fused``, ``train-lockstep``) and ``dump-activations``.

Their options live here, apart from the code they run, because that code imports torch (3-4 s):
this module imports no torch, so ``lspipe --help`` and ``lspipe <command> --help`` start fast.
Each command's function imports its module (:mod:`lspipe.engine.training`,
:mod:`lspipe.engine.activations`) when it runs. One command trains every group of models of one
architecture on one batch stream (a single run, a teacher grid's alphas, lockstep or fused
students): ``lspipe train --objectives '[{"kind": "ls", "alpha": 0.1}, ...]'`` with one ``--out``,
``--metrics`` and ``--runs`` per objective (:func:`lspipe.engine.training.cmd_train`).
"""

from __future__ import annotations

import argparse

from lspipe.base import defaults
from lspipe.base.args import json_arg


def _train(a) -> None:
    from lspipe.engine.training import cmd_train  # torch: only when a model trains

    cmd_train(a)


def _dump(a) -> None:
    from lspipe.engine.activations import cmd_dump  # torch: only when a model runs

    cmd_dump(a)


def add_cli(sub) -> None:
    """``lspipe train`` (aliases ``train-fused``, ``train-lockstep``) and ``dump-activations``."""
    s = sub.add_parser("train", aliases=["train-fused", "train-lockstep"],
                       help="train G models of one architecture on one batch stream (a single run is G = 1)",
                       description="Train G models of one architecture on one batch stream: one model (G = 1), a "
                                   "teacher grid's alphas, or students in lockstep or fused; one --objectives entry, "
                                   "--out and --metrics per model. A run resumes from its --checkpoint. The workflow's "
                                   "train_* rules run it with the config's recipe as JSON.")
    s.add_argument("--data", required=True, help="the prepared dataset (.npz of `lspipe prepare-data`)")
    s.add_argument("--arch", required=True, help="architecture: resnet<6n+2>, alexnet, smallcnn, mlp, inception_v4, "
                                                 "resnet50 or timm:<name> (lspipe.core.models)")
    s.add_argument("--recipe", type=json_arg, required=True, help="the config's recipes.<name> entry as JSON")
    s.add_argument("--seed", type=int, required=True, help="seed of every member (initialisation and batches)")
    s.add_argument("--objectives", type=json_arg, default=[{"kind": "ls"}],
                   help='the members\' objectives as a JSON list, one model each, e.g. \'[{"kind": "ls", "alpha": 0.1}]\' '
                        'or \'[{"kind": "kd", "teacher": "<model.pt>", "T": 4, "beta": 1, "form": "teacher"}]\' '
                        '(lspipe.core.losses.KINDS; default: one model, plain cross-entropy)')
    s.add_argument("--role", choices=["teacher", "student"], default="teacher",
                   help="recorded in the models' metadata (and the experiment table)")
    s.add_argument("--runs", "--run", nargs="+", default=None, help="run names stored in the models' metadata (default: "
                                                            "the folder of each --out)")
    s.add_argument("--out", nargs="+", required=True, help="one model.pt per objective")
    s.add_argument("--metrics", nargs="+", required=True, help="one per-epoch metrics CSV per objective")
    s.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=defaults.default("teachers[].fuse"),
                   help="train the members as one fused network (lspipe.engine.fused; grouped kernels)")
    s.add_argument("--checkpoint", default=None, help="resumable checkpoint of the job (default: beside the first --out)")
    s.add_argument("--probe", type=json_arg, default=None,
                   help="mutual-information probe settings as JSON (recorded for every member)")
    s.add_argument("--probe-out", nargs="+", default=None,
                   help="one probe trace per objective (default: probe.h5 next to each --out); without --probe, "
                        "a placeholder is written there")
    s.add_argument("--device", default=defaults.default("device"), help="'auto' (CUDA when available), 'cpu', "
                                                                        "'cuda' or 'cuda:N'")
    s.add_argument("--threads", type=int, default=None, help="CPU threads, torch.set_num_threads (default: torch's)")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=defaults.default("progress"),
                   help="report progress: a bar on a terminal; elsewhere (a job's log) a time-stamped line every "
                        "30 s and every 10 %% of the steps")
    s.add_argument("--stop-after-epochs", type=int, default=None,
                   help="stop (resumably) after this many epochs in this invocation")
    s.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write each model's per-epoch metrics as TensorBoard scalars under "
                        "DIR/<dataset>/<arch>/<role>/<run>/ (lspipe.engine.tracking; needs the tensorboard package: "
                        "pip install -e '.[tracking]'; the config's tracking.tensorboard)")
    add_stream_loader_option(s)
    s.add_argument("--expect-teachers", type=json_arg, default=None,
                   help="JSON {teacher model.pt: {recipe, objective, seed}}: what the config trains each teacher with; "
                        "a teacher that records otherwise is refused, naming the key (the workflow passes it)")
    s.add_argument("--dist-backend", choices=["nccl", "gloo"], default=None,
                   help="torch.distributed backend under torchrun (default: nccl on CUDA, gloo on the CPU); "
                        "without torchrun the run is one process and this is ignored")
    s.set_defaults(func=_train)

    s = sub.add_parser("dump-activations", aliases=["dump"], help="dump penultimate activations and logits to HDF5",
                       description="Run a trained model over every split of its prepared dataset and write the "
                                   "penultimate activations, logits, labels and example indices to one HDF5 dump: "
                                   "what `lspipe evaluate`, `lspipe calibrate` and the figures read.")
    add_dump_options(s)
    s.set_defaults(func=_dump)


def add_dump_options(s: argparse.ArgumentParser) -> None:
    """The options of an activation dump (``dump-activations``; also ``analyse-model``, which dumps,
    evaluates and calibrates a model in one job: lspipe.experiments.per_model)."""
    s.add_argument("--model", required=True, help="the trained model (model.pt of `lspipe train`)")
    s.add_argument("--data", required=True, help="the prepared dataset it was trained on (.npz)")
    s.add_argument("--out", required=True, help="the dump (HDF5)")
    s.add_argument("--max-train", type=int, default=defaults.default("dump.max_train"),
                   help="training examples whose features are dumped, drawn at random (0: all); the logits of the "
                        "whole training split are always dumped")
    s.add_argument("--seed", type=int, default=0, help="seed of that draw")
    s.add_argument("--chunk-rows", type=int, default=defaults.default("dump.chunk_rows"),
                   help="rows per HDF5 chunk and per forward batch of resident data")
    s.add_argument("--compression", default=defaults.default("dump.compression"),
                   help="HDF5 filter: gzip, lzf or none")
    s.add_argument("--device", default=defaults.default("device"),
                   help="'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    s.add_argument("--threads", type=int, default=None, help="CPU threads, torch.set_num_threads (default: torch's)")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=defaults.default("progress"),
                   help="report the rows dumped: a bar on a terminal; elsewhere (a job's log) a time-stamped line "
                        "every 30 s and every 10 %% of the rows")
    s.add_argument("--eval-batch-size", type=int, default=defaults.default("streaming.eval_batch_size"),
                   help="images per batch of a streamed dataset's dump (resident data goes by --chunk-rows)")
    s.add_argument("--expect", type=json_arg, default=None,
                   help="JSON {recipe, objective, seed}: what the config trains the model with; a model that records "
                        "otherwise is refused, naming the key (the workflow passes it)")
    add_stream_loader_option(s)


def add_stream_loader_option(s: argparse.ArgumentParser) -> None:
    """``--stream-loader``: how a streamed dataset's images are decoded (speed only, never the batches)."""
    s.add_argument("--stream-loader", type=json_arg, default=None,
                   help='a streamed dataset\'s DataLoader settings as JSON, the config\'s streaming keys workers, '
                        'prefetch_factor and pin_memory (default: those in $LSPIPE_STREAM_LOADER, which the workflow '
                        'sets, else the schema\'s); unused for resident data')
