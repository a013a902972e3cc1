"""Each trained model's own analysis, in one job: its activation dump, its evaluation and its calibration.

Every model the workflow trains is dumped (:mod:`lspipe.engine.activations`), evaluated (accuracy
and NLL on the validation and test splits, :func:`lspipe.experiments.accuracy.evaluation`) and
calibrated (temperature scaling, :func:`lspipe.experiments.calibration.calibrate_dump`), always all
three: the dump is read by nothing else of the model before the evaluation and the calibration
exist. So ``lspipe analyse-model`` does the three in one process, and torch, which the dump and the
NLL need, is imported once per model instead of in two of three jobs (the three separate commands
``dump-activations``, ``evaluate`` and ``calibrate`` remain, for use by hand).

Its files are those of the three commands, value for value: the evaluation and the calibration
read the dump back from its file after it is written, exactly as ``lspipe evaluate`` and ``lspipe
calibrate`` do, so they see the very arrays (float32, losslessly compressed) every other reader of
the dump sees.
"""

from __future__ import annotations

import json

from lspipe.base.defaults import default
from lspipe.base.io import write_json
from lspipe.engine import commands as engine_commands
from lspipe.engine.dumpfile import Dump
from lspipe.experiments import accuracy, calibration


def analyse_model(a) -> None:
    """Dump the model (``a``: the options of ``dump-activations``), then write its evaluation JSON
    (``a.eval_out``) and its calibration JSON (``a.calibration_out``, ``a.bins`` bins)."""
    from lspipe.engine.activations import cmd_dump  # torch: only when a model runs

    cmd_dump(a)
    ev = accuracy.evaluation(Dump(a.out))
    write_json(a.eval_out, ev)
    print(json.dumps(ev))
    cal = calibration.calibrate_dump(a.out, a.bins)
    write_json(a.calibration_out, cal)
    print(calibration.summary(a.out, cal))


def add_cli(sub) -> None:
    """``lspipe analyse-model``: dump, evaluate and calibrate one model."""
    s = sub.add_parser("analyse-model", help="dump one model's activations, then evaluate and calibrate it (one job)",
                       description="Dump one trained model's activations (as `lspipe dump-activations`), then evaluate "
                                   "(`lspipe evaluate`) and calibrate it (`lspipe calibrate`), in one job. The "
                                   "workflow's analyse_model rule runs it.")
    engine_commands.add_dump_options(s)
    s.add_argument("--eval-out", required=True, help="evaluation JSON (as lspipe evaluate writes it)")
    s.add_argument("--calibration-out", required=True, help="calibration JSON (as lspipe calibrate writes it)")
    s.add_argument("--bins", type=int, default=default("calibration.bins"),
                   help="equal-width confidence bins of the ECE and the reliability diagram")
    s.set_defaults(func=analyse_model)
