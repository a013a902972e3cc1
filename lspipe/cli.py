"""The lspipe command line: one sub-command per workflow step.

Every Snakemake rule is a thin ``shell:`` call of one of these sub-commands, with every
hyper-parameter passed as an argument (from the rule's ``params:``), so Snakemake's rerun
triggers see all of them, and each step can be run by hand as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _json(s: str):
    try:
        return json.loads(s)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {s!r}") from None


def _optional_float(s: str):
    return None if s in ("", "none", "None", "null") else float(s)


def _setup_torch(threads: int | None):
    import torch

    if threads:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- prepare


def cmd_prepare(a):
    from .data import prepare

    opts = a.options or {}
    p = prepare(a.name, opts.pop("source"), a.out, **opts)
    print(f"prepared {a.name}: {p.meta['sizes']} {p.image_shape} {p.num_classes} classes -> {a.out}")


# --------------------------------------------------------------------------- train


def cmd_train(a):
    import torch

    from . import data as data_mod
    from .losses import Distillation, SmoothedCE
    from .models import build_model, load_model, model_spec, save_model
    from .train import Recipe, fingerprint, fit, resolve_device

    _setup_torch(a.threads)
    device = resolve_device(a.device)
    data = data_mod.load(a.data)
    recipe = Recipe.from_dict(a.recipe)
    out = Path(a.out)
    meta = {
        "dataset": data.meta["name"], "arch": a.arch, "role": a.role, "run": a.run or out.parent.name,
        "alpha": a.alpha, "seed": a.seed, "recipe": a.recipe, "data_meta": data.meta,
    }
    if a.teacher:
        teacher, tmeta = load_model(a.teacher, device)
        objective = Distillation(teacher, a.temperature, a.beta, form=a.form)
        from .activations import file_sha256

        # the teacher's content (not just its path) enters the checkpoint fingerprint, so a student
        # checkpoint left over from before its teacher was retrained is never resumed
        meta.update(teacher=str(a.teacher), teacher_sha256=file_sha256(a.teacher), teacher_alpha=tmeta.get("alpha"),
                    temperature=a.temperature, beta=a.beta, form=a.form)
    else:
        objective = SmoothedCE(a.alpha)
    torch.manual_seed(a.seed)
    model = build_model(a.arch, data)
    callbacks = []
    if a.probe:
        from .mi import ProbeRecorder

        probe_out = a.probe_out or out.with_name("probe.h5")
        callbacks.append(ProbeRecorder(probe_out, data, device=device, recipe=recipe, **a.probe))
    elif a.probe_out:  # a teacher of a grid without a probe: its probe output is a placeholder
        from .mi import write_probe_placeholder

        write_probe_placeholder(a.probe_out)
    ckpt = out.with_name(out.name + ".ckpt")
    fp = fingerprint({k: v for k, v in meta.items() if k != "run"} | {"probe": a.probe})
    from . import complete

    outputs = [out, Path(a.metrics)] + ([callbacks[0].path] if a.probe else [])
    if complete.restore(out, outputs, fp):  # finished before, but Snakemake did not record it
        return
    summary = fit(
        model, data, recipe, objective, seed=a.seed, device=device, checkpoint_path=ckpt,
        metrics_path=a.metrics, run_fingerprint=fp, callbacks=callbacks, progress=a.progress,
        stop_after_epochs=a.stop_after_epochs, run_name=meta["run"],
    )
    meta["summary"] = summary
    save_model(out, model, model_spec(a.arch, data), meta)
    complete.save(out, outputs, fp)
    ckpt.unlink(missing_ok=True)
    print(f"trained {a.arch} ({a.role}) -> {out}: {json.dumps(summary['final'])}")


# --------------------------------------------------------------------------- dump / evaluate


def cmd_dump(a):
    from . import data as data_mod
    from .activations import file_sha256, write_dump
    from .models import load_model
    from .train import resolve_device

    _setup_torch(a.threads)
    device = resolve_device(a.device)
    model, meta = load_model(a.model, device)
    data = data_mod.load(a.data)
    attrs = {
        "model": str(a.model), "sha256": file_sha256(a.model), "dataset": meta["dataset"], "arch": meta["arch"],
        "role": meta["role"], "run": meta["run"], "alpha": meta["alpha"], "seed": meta["seed"],
        "meta": json.dumps(meta, default=str),
    }
    for k in ("teacher_alpha", "temperature", "beta", "form"):
        if k in meta:
            attrs[k] = meta[k]
    write_dump(a.out, model, data, device=device, attrs=attrs, max_train=a.max_train, seed=a.seed,
               chunk_rows=a.chunk_rows, compression=a.compression)
    from . import complete

    complete.release(a.model)  # the model is accepted (Snakemake ran a job reading it): a forced rebuild retrains
    print(f"dumped {a.model} -> {a.out}")


def cmd_evaluate(a):
    from .activations import Dump, evaluation
    from .io import write_json

    ev = evaluation(Dump(a.dump))
    write_json(a.out, ev)
    print(json.dumps(ev))


def cmd_accuracy_table(a):
    from .tables import accuracy_table

    accuracy_table(a.evals, a.csv, a.md, split=a.split, digits=a.digits)
    print(Path(a.md).read_text())


# --------------------------------------------------------------------------- parser


def add_training_inputs(s: argparse.ArgumentParser) -> None:
    """Options every training command takes: the data, the architecture, the recipe, the seed."""
    s.add_argument("--data", required=True)
    s.add_argument("--arch", required=True)
    s.add_argument("--recipe", type=_json, required=True, help="the config's recipes.<name> entry as JSON")


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


def build_parser() -> argparse.ArgumentParser:
    from .defaults import default

    p = argparse.ArgumentParser(prog="lspipe", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("prepare", help="prepare a dataset into one .npz with train/val/test splits")
    s.add_argument("--name", required=True)
    s.add_argument("--options", type=_json, required=True, help="the config's datasets.<name> entry as JSON")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("train", help="train a teacher or a student")
    add_training_inputs(s)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--alpha", type=float, default=0.0, help="label smoothing (when not distilling)")
    s.add_argument("--role", choices=["teacher", "student"], default="teacher")
    s.add_argument("--run", default=None, help="run name stored in the model's metadata")
    s.add_argument("--teacher", default=None, help="teacher model.pt: distil from it")
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--beta", type=float, default=default("distillation[].beta"))
    s.add_argument("--form", choices=["teacher", "slides", "hinton"], default=default("distillation[].form"),
                   help="distillation form: teacher (only the teacher at T; default), slides (student at T too), "
                        "hinton (student at T, soft term x T^2)")
    s.add_argument("--probe", type=_json, default=None, help="mutual-information probe settings as JSON")
    s.add_argument("--probe-out", default=None,
                   help="probe trace (default: probe.h5 next to --out); without --probe, a placeholder is written there")
    s.add_argument("--out", required=True, help="model.pt")
    s.add_argument("--metrics", required=True, help="per-epoch metrics CSV")
    add_run_options(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("dump", help="dump penultimate activations and logits to HDF5")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--max-train", type=int, default=default("dump.max_train"), help="0: all")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--chunk-rows", type=int, default=default("dump.chunk_rows"))
    s.add_argument("--compression", default=default("dump.compression"))
    s.add_argument("--device", default=default("device"))
    s.add_argument("--threads", type=int, default=None)
    s.set_defaults(func=cmd_dump)

    s = sub.add_parser("evaluate", help="accuracy and NLL on val/test from a dump")
    s.add_argument("--dump", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("accuracy-table", help="Table 2: accuracy mean +- std over seeds")
    s.add_argument("--evals", nargs="+", required=True)
    s.add_argument("--csv", required=True)
    s.add_argument("--md", required=True)
    s.add_argument("--split", default=default("accuracy_table.split"))
    s.add_argument("--digits", type=int, default=default("accuracy_table.digits"))
    s.set_defaults(func=cmd_accuracy_table)

    for register in _extensions():
        register(sub)
    return p


def _extensions():
    """Sub-commands contributed by the analysis modules (each exposes ``add_cli(subparsers)``)."""
    import importlib

    for name in ("calibration", "projection", "distill", "mi", "bench", "fused", "lockstep", "teacher_projection",
                 "claims", "experiments"):
        mod = importlib.import_module(f"lspipe.{name}")
        if hasattr(mod, "add_cli"):
            yield mod.add_cli


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
