"""The lspipe command line: one sub-command per workflow step.

Each sub-command is registered by the module that does its work (``add_cli`` in
``COMMAND_MODULES``); this module holds only ``main``, the parser and the checks of option values.

Every Snakemake rule is a thin ``shell:`` call of one of these sub-commands, with every
hyper-parameter passed as an argument (from the rule's ``params:``), so Snakemake's rerun
triggers see all of them, and each step can be run by hand as well.

Bad input gives one line naming the problem and the fix, never a traceback: option values are
checked against the config schema's rule for the same setting (:data:`OPTION_RULES`, e.g.
``--alpha`` as ``teachers[].alphas``, ``--recipe`` as ``recipes.<name>``); the errors the commands
raise for files and settings (every :class:`lspipe.base.errors.UserError`, and operating-system
errors the user can fix: :func:`lspipe.base.errors.user_message`) are printed as
``lspipe <command>: error: ...`` with exit status 2.

``lspipe --help`` lists the commands in two groups: those people type (:data:`COMMANDS`) and the
workflow-internal ones, which the Snakemake rules run with the config's settings as JSON. Every
option has a help text; its default is shown (:class:`HelpFormatter`). Progress goes to the
``logging`` module off a terminal (:mod:`lspipe.base.progress`), configured here (:func:`main`).

Exit status: 0 done; 2 a user error (one line); 3 a run stopped on purpose (``--stop-after-epochs``,
one line, resumable); 75 ``train`` checkpointed on SIGTERM/SIGUSR1 and stopped (one line, resumable:
:mod:`lspipe.engine.preempt`); 143 stopped by SIGTERM (temporary files removed); 1 a bug (its traceback).
Inside the workflow the ending line also goes to Snakemake's stderr (:data:`ERROR_FD_ENV`), so it
survives a log that cannot be written.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from lspipe import bench, launch
from lspipe.base import defaults
from lspipe.base.args import non_finite
from lspipe.base.errors import EXIT_STOPPED, EXIT_TERMINATED, EXIT_USER_ERROR, Stopped, Terminated, user_message
from lspipe.base.io import remove_stale_temps
from lspipe.core import source
from lspipe.engine import commands as engine_commands
from lspipe.experiments import (accuracy, calibration, distill, distill_toy, experiment_table, learning_curves, mi,
                                per_model, projection, teacher_projection)
from lspipe.workflow import report

# The modules that contribute sub-commands, in the order of the workflow: each defines
# ``add_cli(subparsers)`` next to the code it runs (the engine's, whose code imports torch, in
# lspipe.engine.commands). None of them imports torch: `lspipe --help` starts fast.
COMMAND_MODULES = (source, engine_commands, per_model, accuracy, calibration, projection, distill, distill_toy,
                   teacher_projection, mi, report, experiment_table, learning_curves, bench, launch)


# The commands people type (primary names): the analysis of one dump, the claims report of a results
# folder, the benchmark. Every other command is workflow-internal: a Snakemake rule's step, taking the
# config's settings as JSON (`snakemake` runs them; each still works by hand).
COMMANDS = ("dump-activations", "evaluate", "calibrate", "claims", "bench")

DESCRIPTION = """\
Reproduce "When Does Label Smoothing Help?" (Mueller, Kornblith, Hinton, NeurIPS 2019). The workflow
runs with `snakemake` (see the README); these are its steps. `lspipe <command> --help` describes each."""


def version() -> str:
    """lspipe's version: the installed distribution's, else the package's own (a checkout on PYTHONPATH)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("lspipe")
    except PackageNotFoundError:
        return sys.modules[__package__].__version__  # lspipe/__init__.py, imported before this module


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="lspipe", description=DESCRIPTION, usage="%(prog)s [-h] [--version] <command> [options]")
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    # one sub-parser action (what argparse parses), hidden; the listing is two groups of its entries
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>", help=argparse.SUPPRESS, prog="lspipe")
    for module in COMMAND_MODULES:
        module.add_cli(sub)
    _group_commands(p, sub)
    _check_option_values(p)
    return p


def _group_commands(p: argparse.ArgumentParser, sub) -> None:
    """List ``sub``'s commands in ``--help`` as two groups: :data:`COMMANDS`, then the workflow's."""
    people = p.add_argument_group("commands")
    internal = p.add_argument_group(
        "workflow-internal commands",
        "The Snakemake rules run these, passing the config's settings as JSON: run the workflow with "
        "`snakemake` rather than by hand.")
    unknown = set(COMMANDS) - {a.dest for a in sub._choices_actions}
    assert not unknown, f"lspipe.cli.COMMANDS names no command: {sorted(unknown)}"
    for action in sub._choices_actions:  # argparse's (name, aliases, help) entries of the listing
        (people if action.dest in COMMANDS else internal)._group_actions.append(action)
    p._action_groups.remove(p._optionals)  # the commands first, then -h and --version
    p._action_groups.append(p._optionals)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # lspipe's records (progress lines off a terminal: lspipe.base.progress) go to stderr with a time stamp,
    # from INFO on; other libraries' from WARNING on. A host program that configured logging keeps its handlers.
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    logging.getLogger("lspipe").setLevel(logging.INFO)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        _remove_stale_temps(args)
        args.func(args)
        sys.stdout.flush()  # a log that cannot be written (a full disk) fails here, in one line, not at exit
        sys.stderr.flush()
    except Stopped as err:
        _report(f"lspipe {args.command}: stopped: {' '.join(str(err).split())} (run the same command again to resume)")
        return getattr(err, "exit_status", EXIT_STOPPED)  # 75: checkpointed on a signal (lspipe.engine.preempt)
    except Terminated:
        _report(f"lspipe {args.command}: stopped by SIGTERM (the job was cancelled): nothing half-written is left; "
                "rerun the job")
        return EXIT_TERMINATED
    except Exception as err:
        message = user_message(err)  # None: a bug, shown with its traceback
        if message is None:
            _report(f"lspipe {args.command}: internal error: {' '.join(f'{type(err).__name__}: {err}'.split())[:300]} "
                    "(the traceback is in the job's log)", log=False)
            raise
        _report(f"lspipe {args.command}: error: {' '.join(message.split())}")
        return EXIT_USER_ERROR
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


# --------------------------------------------------------------------------- how a command ends

# The workflow's jobs redirect a command's stdout and stderr into the job's log (`> {log} 2>&1`); the
# Snakefile's shell prefix (workflow/rules/common.smk) keeps Snakemake's own stderr open on this descriptor
# and names it here, so the line that ends a command reaches Snakemake even when the log cannot be written
# (a full disk: the log is on it).
ERROR_FD_ENV = "LSPIPE_ERROR_FD"
# options naming a command's output files: temporary files a killed writer left beside them are removed
OUTPUT_OPTIONS = ("out", "csv", "md", "json", "rst", "figures", "eval_out", "calibration_out", "metrics", "probe_out",
                  "checkpoint")


def _report(line: str, log: bool = True) -> None:
    """Print ``line`` to stderr (the job's log) and to the workflow's stderr (:data:`ERROR_FD_ENV`); a
    write that fails (a full disk under the log) is left out, never raised."""
    if log:
        try:
            print(line, file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
    fd = os.environ.get(ERROR_FD_ENV)
    if fd and fd.isdigit():
        try:
            os.write(int(fd), (line + "\n").encode("utf-8", "backslashreplace"))
        except OSError:
            pass  # not open here (a command run by hand, a process started without it)


def _terminate(signum, frame):
    raise Terminated()


def _remove_stale_temps(args) -> None:
    """Remove the temporary files a writer of this command's outputs left when it was killed (SIGKILL: no
    cleanup runs); one job at a time writes an output. Under torchrun only rank 0 writes, and cleans."""
    if os.environ.get("RANK", "0") != "0":
        return
    paths = []
    for dest in OUTPUT_OPTIONS:
        value = getattr(args, dest, None)
        values = value if isinstance(value, list) else [value]
        paths += [v for v in values if isinstance(v, str) and v]
    remove_stale_temps(*paths)


# --------------------------------------------------------------------------- option values


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, with every option's default appended: ``(default: X)``. Not for required
    options, a default of None or nothing (the help says what happens then), a flag's False, or help
    that already names its default."""

    def _get_help_string(self, action):
        help = action.help or ""
        default = action.default
        if (action.required or default in (None, "", [], ()) or default is argparse.SUPPRESS or not action.option_strings
                or "default" in help or (action.nargs == 0 and default is False
                                         and not isinstance(action, argparse.BooleanOptionalAction))):
            return help
        if isinstance(action, argparse.BooleanOptionalAction):
            shown = action.option_strings[0] if default else action.option_strings[-1]
        elif isinstance(default, (list, tuple)):
            shown = " ".join(map(str, default))
        elif isinstance(default, dict):
            shown = json.dumps(default)
        else:
            shown = str(default)
        return f"{help} (default: {shown.replace('%', '%%')})".lstrip()


class Parser(argparse.ArgumentParser):
    """argparse, with errors on one line: ``<prog>: error: <message> (see <prog> --help)``, and
    :class:`HelpFormatter` (the sub-commands' parsers are of this class too)."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message):
        if message.startswith("argument <command>: invalid choice: "):  # not the list of all 30 names
            message = f"unknown command {message.split(': ')[2].split(' (choose')[0]}"
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _arch(value: str) -> str:
    from lspipe.core.models import available, is_known  # torch: only when a training command checks --arch

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
    "temperatures": ({"type": "number", "exclusiveMinimum": 0}, "distillation[].temperatures"),
    "seed": ("#/$defs/seed", "teachers[].seeds"),
    "threads": ("threads", "threads"),
    "device": ("device", "device"),
    "bins": ("calibration.bins", "calibration.bins"),
    "min_bin_count": ("calibration.min_bin_count", "calibration.min_bin_count"),
    "digits": ("accuracy_table.digits", "accuracy_table.digits"),
    "dpi": ("figures.dpi", "figures.dpi"),
    "scale": ("figures.scale", "figures.scale"),
    "per_class": ("projections.per_class", "projections.per_class"),
    "chunk_rows": ("dump.chunk_rows", "dump.chunk_rows"),
    "compression": ("dump.compression", "dump.compression"),
    "max_train": ({"type": "integer", "minimum": 0}, "dump.max_train (0: all)"),
    "stop_after_epochs": ({"type": "integer", "minimum": 1}, ""),
    "recipe": ("recipes.*", "recipes.<name>"),
    "options": ("datasets.*", "datasets.<name>"),
    "streaming": ("streaming", "streaming"),
    "stream_loader": ("streaming", "streaming"),
    "arch": (_arch, ""),
}
# the commands whose options these are (other commands' options of the same name mean other things)
_CHECKED_COMMANDS = {"train", "train-fused", "train-lockstep", "dump-activations", "dump", "analyse-model", "prepare-data", "prepare",
                     "calibrate", "calibration-table", "reliability-figure", "accuracy-table", "projections-figure",
                     "projections", "distillation-gamma", "distill-gamma", "distillation-figure", "distill-figure",
                     "distillation-teacher-projections", "teacher-projections", "mi-curve", "mi-figure",
                     "distillation-toy-table", "toy-table"}


def _schema_rule(rule) -> dict:
    """The JSON schema (with the config schema's $defs) of an :data:`OPTION_RULES` rule."""
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
        if non_finite(value):  # NaN or infinity (JSON reads NaN): no schema bound refuses it
            where = ", ".join(non_finite(value))
            raise argparse.ArgumentTypeError(f"{where} is not a finite number" + (f" (as the config key {key})" if key else ""))
        if callable(rule):
            try:
                return rule(value)
            except ValueError as err:
                raise argparse.ArgumentTypeError(str(err)) from None
        from jsonschema import Draft202012Validator  # only when an option is given

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
