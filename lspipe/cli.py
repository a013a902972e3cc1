"""The lspipe command line: one sub-command per workflow step.

Each sub-command is registered by the module that does its work (``add_cli`` in
``COMMAND_MODULES``); this module holds only the argument helpers they share and ``main``.

Every Snakemake rule is a thin ``shell:`` call of one of these sub-commands, with every
hyper-parameter passed as an argument (from the rule's ``params:``), so Snakemake's rerun
triggers see all of them, and each step can be run by hand as well.

Bad input gives one line naming the problem and the fix, never a traceback: option values are
checked against the config schema's rule for the same setting (:data:`OPTION_RULES`, e.g.
``--alpha`` as ``teachers[].alphas``, ``--recipe`` as ``recipes.<name>``); errors the commands
raise for files and settings (:func:`_is_user_error`) are printed as ``lspipe <command>: error:
...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys


def json_arg(s: str):
    try:
        return json.loads(s)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {s!r}") from None


def optional_float(s: str):
    return None if s in ("", "none", "None", "null") else float(s)


def setup_torch(threads: int | None):
    import torch

    if threads:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- parser


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
    from lspipe.base.defaults import default

    s.add_argument("--device", default=default("device"))
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=default("progress"))
    s.add_argument("--stop-after-epochs", type=int, default=None,
                   help="stop (resumably) after this many epochs in this invocation")


# The modules that contribute sub-commands, in the order of the workflow: each defines
# ``add_cli(subparsers)`` next to the code it runs (the one way a sub-command is registered).
COMMAND_MODULES = ("core.data", "engine.training", "engine.fused", "engine.lockstep", "engine.activations", "core.tables",
                   "experiments.calibration", "experiments.projection", "experiments.distill",
                   "experiments.teacher_projection", "experiments.mi", "experiments.claims",
                   "experiments.experiment_table", "bench")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = Parser(prog="lspipe", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"lspipe.{name}").add_cli(sub)
    _check_option_values(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except Exception as err:
        message = _user_error_message(err)
        if message is None:
            raise
        print(f"lspipe {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    return 0


def _user_error_message(err: Exception) -> str | None:
    """The one-line message of an error the user can fix, or None for a bug (shown with its traceback).

    User errors: a bad configuration or option (:class:`lspipe.core.config.ConfigError`), a missing,
    damaged or misplaced file (:class:`lspipe.core.data.DataError`, with models, dumps and prepared
    data), an output that cannot be written (:class:`lspipe.base.io.WriteError`: full disk, no
    permission, a file in the way), an input that is not what it should be
    (:class:`lspipe.base.io.ReadError`), a diverged training run, and an operating-system error the
    user can fix (:data:`lspipe.base.io.USER_ERRNOS`, or a missing file)."""
    import errno

    from lspipe.core.config import ConfigError
    from lspipe.core.data import DataError
    from lspipe.base.io import USER_ERRNOS, ReadError, WriteError, os_error_message

    if isinstance(err, (ConfigError, DataError, ReadError, WriteError)):
        return str(err)
    train = sys.modules.get("lspipe.engine.training")  # imported only by the commands that can raise these
    if train is not None and isinstance(err, train.TrainingDiverged):
        return str(err)
    if isinstance(err, OSError) and (err.errno in USER_ERRNOS or err.errno == errno.ENOENT):
        if err.errno == errno.ENOENT:
            return f"{err.filename or err}: no such file or folder; check the path (or build it first: snakemake <file>)"
        return os_error_message(err, what="use")
    return None


# --------------------------------------------------------------------------- option values


class Parser(argparse.ArgumentParser):
    """argparse, with errors on one line: ``<prog>: error: <message> (see <prog> --help)``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _arch(value: str) -> str:
    from lspipe.core.models import available, is_known

    if not is_known(value):
        raise ValueError(f"unknown architecture {value!r}; available: {', '.join(available())}")
    return value


# Option (by its dest) -> (the rule its values follow, the config key named in messages). A rule is
# a schema key (lspipe.base.defaults.node) or $defs entry, a schema of its own where the option's meaning
# differs from the config key's, or a function raising ValueError.
OPTION_RULES = {
    "alpha": ("#/$defs/alpha", "teachers[].alphas"),
    "alphas": ("#/$defs/alpha", "teachers[].alphas"),
    "ls_alpha": ({"type": ["number", "null"], "exclusiveMinimum": 0, "exclusiveMaximum": 1}, "calibration.ls_alpha"),
    "beta": ("distillation[].beta", "distillation[].beta"),
    "temperature": ({"type": "number", "exclusiveMinimum": 0}, "distillation[].temperatures"),
    "temperatures": ({"type": "number", "exclusiveMinimum": 0}, "distillation[].temperatures"),
    "seed": ("#/$defs/seed", "teachers[].seeds"),
    "threads": ("threads", "threads"),
    "device": ("device", "device"),
    "bins": ("calibration.bins", "calibration.bins"),
    "min_bin_count": ("calibration.min_bin_count", "calibration.min_bin_count"),
    "digits": ("accuracy_table.digits", "accuracy_table.digits"),
    "dpi": ("figures.dpi", "figures.dpi"),
    "per_class": ("projections.per_class", "projections.per_class"),
    "chunk_rows": ("dump.chunk_rows", "dump.chunk_rows"),
    "compression": ("dump.compression", "dump.compression"),
    "max_train": ({"type": "integer", "minimum": 0}, "dump.max_train (0: all)"),
    "stop_after_epochs": ({"type": "integer", "minimum": 1}, ""),
    "recipe": ("recipes.*", "recipes.<name>"),
    "options": ("datasets.*", "datasets.<name>"),
    "arch": (_arch, ""),
}
# the commands whose options these are (other commands' options of the same name mean other things)
_CHECKED_COMMANDS = {"train", "train-fused", "train-lockstep", "dump-activations", "dump", "prepare-data", "prepare",
                     "calibrate", "calibration-table", "reliability-figure", "accuracy-table", "projections-figure",
                     "projections", "distillation-gamma", "distill-gamma", "distillation-figure", "distill-figure",
                     "distillation-teacher-projections", "teacher-projections", "mi-curve", "mi-figure"}


def _schema_rule(rule) -> dict:
    """The JSON schema (with the config schema's $defs) of an :data:`OPTION_RULES` rule."""
    from lspipe.base import defaults

    root = defaults._schema()
    if isinstance(rule, str) and rule.startswith("#/$defs/"):
        return {"$defs": root["$defs"], "$ref": rule}
    if isinstance(rule, str):
        return {"$defs": root["$defs"], **defaults.node(rule)}
    return {"$defs": root["$defs"], **rule}


def _checked(convert, rule, key: str):
    """An argparse ``type``: convert with ``convert``, then check the value against ``rule``."""

    def check(text):
        value = convert(text) if convert else text
        if callable(rule):
            try:
                return rule(value)
            except ValueError as err:
                raise argparse.ArgumentTypeError(str(err)) from None
        from jsonschema import Draft202012Validator

        errors = list(Draft202012Validator(_schema_rule(rule)).iter_errors(value))
        if errors:
            err = min(errors, key=lambda e: list(map(str, e.absolute_path)))
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
            named = f"{key}{where}" if key else where.lstrip(".")
            raise argparse.ArgumentTypeError(err.message + (f" (as the config key {named})" if named else ""))
        return value

    check.__name__ = getattr(convert, "__name__", "value")  # argparse names the type in its messages
    return check


def _check_option_values(parser: argparse.ArgumentParser) -> None:
    """Give the options of the commands in :data:`_CHECKED_COMMANDS` the schema rules of :data:`OPTION_RULES`."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        if name not in _CHECKED_COMMANDS:
            continue
        for action in command._actions:
            if action.dest not in OPTION_RULES or action.nargs == 0 or action.choices is not None:
                continue
            action.type = _checked(action.type, *OPTION_RULES[action.dest])


if __name__ == "__main__":
    sys.exit(main())
