"""The lspipe command line: one sub-command per workflow step.

Each sub-command is registered by the module that does its work (``add_cli`` in
``COMMAND_MODULES``); this module holds only the argument helpers they share and ``main``.

Every Snakemake rule is a thin ``shell:`` call of one of these sub-commands, with every
hyper-parameter passed as an argument (from the rule's ``params:``), so Snakemake's rerun
triggers see all of them, and each step can be run by hand as well.
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
    from .defaults import default

    s.add_argument("--device", default=default("device"))
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=default("progress"))
    s.add_argument("--stop-after-epochs", type=int, default=None,
                   help="stop (resumably) after this many epochs in this invocation")


# The modules that contribute sub-commands, in the order of the workflow: each defines
# ``add_cli(subparsers)`` next to the code it runs (the one way a sub-command is registered).
COMMAND_MODULES = ("data", "train", "fused", "lockstep", "activations", "tables", "calibration", "projection",
                   "distill", "teacher_projection", "mi", "claims", "experiments", "bench")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = argparse.ArgumentParser(prog="lspipe", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"lspipe.{name}").add_cli(sub)
    return p


def main(argv=None) -> int:
    from .config import ConfigError
    from .data import DataError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, ConfigError) as err:
        print(f"lspipe {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if not _is_user_error(err):
            raise
        print(f"lspipe {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _is_user_error(err: Exception) -> bool:
    """Errors whose message already says what happened and what to change (no traceback needed)."""
    train = sys.modules.get("lspipe.train")  # imported only by the commands that can raise these
    return train is not None and isinstance(err, train.TrainingDiverged)


if __name__ == "__main__":
    sys.exit(main())
