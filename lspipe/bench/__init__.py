"""``lspipe bench``: training throughput of lspipe's engine against a conventional PyTorch loop.

One process, same model, same batch size, same SGD step (Nesterov momentum 0.9, lr 0.1, weight
decay 1e-4, plain cross-entropy), on random uint8 CIFAR-shaped data (32 x 32 x 3, 10 classes):

* **baseline**: the textbook pipeline: a torchvision-style ``Dataset`` of HWC uint8 arrays that
  makes a PIL image per example and applies ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``; a ``DataLoader`` (``num_workers`` = the
  machine's cores, at most 8; ``pin_memory`` on CUDA; shuffling); fp32; the model is called on
  the normalised floats (its built-in normalisation is bypassed). Its workers' head start is spent
  in the warm-up, so its augmentation runs inside its timed window as the engine's does.
* **engine**: :func:`lspipe.engine.training.fit` itself (the workflow's code path): uint8 data
  resident on the device, batched on-device augmentation, no workers, the model normalising uint8
  itself, one step function per batch (:mod:`lspipe.engine.step`). Its variants
  (:func:`engine_variants`) are recipe settings: on CUDA ``precision`` (fp32, tf32, bf16),
  ``channels_last`` and ``cuda_graph`` (the whole step as one CUDA graph), the headline the
  fastest; on the CPU ``fp32`` (the default), ``fp32+cl`` (``cpu_channels_last``) and, with
  ``--cpu-bf16``, ``bf16+cl`` (``cpu_amp``), the headline the fastest in fp32 (the baseline's
  precision); ``--compile`` times ``torch.compile`` instead.

Every configuration is timed per step (a CUDA event after each step on CUDA, ``perf_counter`` on the
CPU) over ``--steps`` steps after its warm-up (worker start-up, kernel selection, a graph's capture),
in ``--repeats`` interleaved rounds (medians). ``--preset-recipes`` adds each architecture with a
preset's recipe (clipping, loss scale); ``--fuse G [G ...]`` times G models of each architecture
trained fused (:mod:`lspipe.engine.fused`) in the fastest variant, with peak GPU memory, and reports
model-images/s against the single engine; ``--anatomy`` a short ``torch.profiler`` trace. A
configuration that fails is recorded, not fatal. ``--distill`` times the distillation case;
``--project`` projects a config's training time from the figures
(:func:`lspipe.bench.projection.project`: the plan's training jobs). Figures are printed and written as
JSON (``--out``) with the machine they came from.

The package, by concern: :mod:`~lspipe.bench.settings` (what is measured: variants, a preset's recipes),
:mod:`~lspipe.bench.timing` (the measurements; torch), :mod:`~lspipe.bench.flops` (FLOP counting; torch),
:mod:`~lspipe.bench.projection` (a configuration's training time) and :mod:`~lspipe.bench.report` (the
tables); this module holds the command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from lspipe.base import defaults
from lspipe.base.io import write_json
from lspipe.bench.projection import project
from lspipe.bench.report import format_distillation, format_projection, format_report
from lspipe.bench.settings import CUDA_VARIANTS, PAPER_TEMPERATURES


def cmd_bench(a):
    if not a.figures or a.distill or a.distill_only:  # a projection from earlier figures measures nothing
        import torch

        from lspipe.bench import timing  # torch: only when the benchmark measures

        if a.threads:
            torch.set_num_threads(a.threads)
    if a.smoke:  # seconds: tiny model and batch, a couple of steps; checks the plumbing, not speed
        archs, bs, warmup, steps = a.archs or ["resnet8", "smallcnn"], a.batch_size or 16, 1, 2
        workers = 1 if a.workers is None else a.workers
    else:
        archs, bs, warmup, steps, workers = (a.archs or ["resnet56", "alexnet"], a.batch_size or 128, a.warmup,
                                             a.steps, a.workers)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if a.figures:  # project from earlier figures, measure nothing
        res = merge_figures(a.figures)
    elif a.distill_only:
        res = None
    else:
        res = timing.run_benchmark(archs, batch_size=bs, warmup=warmup, steps=steps, workers=workers, device=a.device,
                            repeats=a.repeats, compile_=a.compile, compile_mode=a.compile_mode, cpu_bf16=a.cpu_bf16,
                            fuse=a.fuse, variants=a.variants, presets=a.preset_recipes, anatomy=a.anatomy,
                            out_path=a.out, log=log)
        res["settings"]["smoke"] = bool(a.smoke)
    if a.distill or a.distill_only:
        tarch, sarch = a.distill_archs or (["resnet8", "smallcnn"] if a.smoke else ["resnet56", "alexnet"])
        dres = timing.run_distillation_benchmark(tarch, sarch, a.temperatures or ((1, 2) if a.smoke else PAPER_TEMPERATURES),
                                          batch_size=bs, warmup=1 if a.smoke else a.warmup, steps=steps,
                                          repeats=a.repeats, device=a.device, log=log)
        if res is None:
            res = {"machine": dres["machine"], "settings": {"batch_size": bs, "smoke": bool(a.smoke)}, "results": []}
        res["distillation"] = dres
    if res["results"] and not res.get("assumed"):  # assumed rates (--figures) have no measurement to report
        print(format_report(res))
    if "distillation" in res:
        print(format_distillation(res["distillation"]))
    if a.project:
        if a.gpu_tflops is not None:  # FLOP-based rates for the architectures not measured
            res["sustained_tflops"] = a.gpu_tflops
        res["projection"] = project(yaml.safe_load(Path(a.project).read_text()), res)
        res["projection"]["config"] = str(a.project)
        print()
        print(format_projection(res["projection"]))
    if a.out:
        write_json(a.out, res)
        print(f"figures -> {a.out}")


def merge_figures(paths) -> dict:
    """Earlier figures (``--figures``), one file or several: the first with engine results gives the
    results and the machine; ``distillation``, ``jobs`` and ``sustained_tflops`` come from whichever file
    holds them (bench.json, bench-distill.json, jobs.json of one GPU check)."""
    res: dict = {}
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    found = [p for p in paths if Path(p).exists()]
    if not found:
        raise FileNotFoundError(f"none of the figures {', '.join(map(str, paths))} exists")
    for p in paths:
        if p not in found:  # a step of the check that failed: project from the others
            print(f"warning: figures {p} do not exist; projecting without them", file=sys.stderr)
            continue
        fig = json.loads(Path(p).read_text())
        if "results" in fig and (fig["results"] or "results" not in res):
            res = {**fig, **{k: res[k] for k in ("distillation", "jobs", "sustained_tflops") if k in res}}
        for key in ("distillation", "jobs", "sustained_tflops"):
            if key in fig and (key not in res or "results" not in fig):
                res[key] = fig[key]
        if "machine" not in res and "machine" in fig:
            res["machine"] = fig["machine"]
    res.setdefault("results", [])
    res.setdefault("settings", {})
    res.setdefault("machine", {"gpu": None, "cpu": None})
    return res


def add_cli(sub) -> None:
    s = sub.add_parser("bench", help="training images/s: lspipe's engine vs. a torchvision DataLoader baseline",
                       description=__doc__.split("\n\n")[0])
    s.add_argument("--archs", nargs="+", default=None, help="architectures (default: resnet56 alexnet)")
    s.add_argument("--batch-size", type=int, default=None, help="default 128 (16 with --smoke)")
    s.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps per configuration (a graph adds its own)")
    s.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    s.add_argument("--repeats", type=int, default=3, help="measure every configuration this many times, interleaved "
                                                          "(median)")
    s.add_argument("--workers", type=int, default=None, help="baseline DataLoader workers (default: cores, max 8)")
    s.add_argument("--device", default=defaults.default("device"),
                   help="'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    s.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    s.add_argument("--variants", nargs="+", default=None,
                   help="engine variants to time (default: all of the device's: on CUDA " + ", ".join(CUDA_VARIANTS)
                        + "; on the CPU fp32, fp32+cl)")
    s.add_argument("--compile", action="store_true", help="engine with torch.compile")
    s.add_argument("--compile-mode", default=None,
                   help="torch.compile mode (e.g. reduce-overhead: CUDA graphs; max-autotune)")
    s.add_argument("--cpu-bf16", action="store_true", help="also measure the engine in bf16 autocast on the CPU")
    s.add_argument("--fuse", type=int, nargs="+", default=[0],
                   help="also time this many models trained fused (several sizes: 7 21), in the fastest variant")
    s.add_argument("--preset-recipes", default=None, metavar="PRESET",
                   help="also time each arch with this preset's recipe (recipes.<arch>: clipping, loss scale, ...), "
                        "which the fused groups then use too (e.g. workflow/presets/paper.yaml)")
    s.add_argument("--anatomy", action="store_true",
                   help="a short torch.profiler trace of the fastest variant: kernels, host ms and GPU-busy ms per step")
    s.add_argument("--distill", action="store_true",
                   help="also time the distillation case: the hard teacher's T family separate vs. lockstep vs. fused")
    s.add_argument("--distill-only", action="store_true", help="time only the distillation case")
    s.add_argument("--distill-archs", nargs=2, default=None, metavar=("TEACHER", "STUDENT"),
                   help="architectures of the distillation case (default: resnet56 alexnet)")
    s.add_argument("--temperatures", nargs="+", type=float, default=None,
                   help="the distillation case's temperatures (default: the paper's 1 2 3 4 8 12 16)")
    s.add_argument("--smoke", action="store_true", help="seconds: tiny models and steps (tests)")
    s.add_argument("--out", default=None, help="write the figures as JSON (after every repeat, and at the end)")
    s.add_argument("--project", default=None, metavar="CONFIG",
                   help="also project the training wall time of this config's grids (e.g. workflow/presets/paper.yaml)")
    s.add_argument("--figures", nargs="+", default=None, metavar="JSON",
                   help="use the figures of earlier runs (their --out; bench.json, bench-distill.json, jobs.json) "
                        "instead of measuring")
    s.add_argument("--gpu-tflops", type=float, default=None, metavar="TFLOPS",
                   help="--project: training FLOP/s (1e12) one GPU sustains; architectures the figures do not measure "
                        "are projected from their FLOP count at it (default: the figures' sustained_tflops, if any)")
    s.set_defaults(func=cmd_bench)
