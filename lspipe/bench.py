"""``lspipe bench``: training throughput of lspipe's engine against a conventional PyTorch loop.

One process, one run, same model, same batch size, same SGD step (Nesterov momentum 0.9, lr 0.1,
weight decay 1e-4, plain cross-entropy), on random uint8 CIFAR-shaped data (32 x 32 x 3, 10
classes):

* **baseline**: the textbook pipeline: a torchvision-style ``Dataset`` of HWC uint8 arrays that
  makes a PIL image per example and applies ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``; a ``DataLoader`` (``num_workers`` = the
  machine's cores, at most 8; ``pin_memory`` on CUDA; shuffling); fp32; the model is called on
  the normalised floats (its built-in normalisation is bypassed).
* **engine**: :func:`lspipe.engine.training.fit` itself (the workflow's code path): uint8 data resident
  on the device, batched on-device augmentation (:func:`lspipe.core.augment.random_crop_flip`), no
  workers, the model normalising uint8 itself; on CUDA bf16 autocast + channels_last (optional
  ``torch.compile``; ``--compile-mode reduce-overhead`` adds CUDA graphs). On the CPU the
  recipe's CPU switches are measured as variants: ``fp32`` (the default), ``fp32+cl``
  (``cpu_channels_last``) and, with ``--cpu-bf16``, ``bf16+cl`` (``cpu_amp``); the headline
  ``engine`` figure is the fastest variant in fp32 (the baseline's precision), and every variant
  is reported with the recipe keys that select it.

Warm-up steps (worker start-up, kernel selection, compilation) are excluded; the timed steps
end with a device synchronisation. ``--fuse G`` also times G models of each architecture trained
fused (:mod:`lspipe.engine.fused`) and reports model-images/s against the single engine.
Figures are printed and written as JSON (``--out``) with the machine they came from.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lspipe.base import defaults
from lspipe.base.io import write_json
from lspipe.core.data import Prepared
from lspipe.core.recipe import Recipe
from lspipe.experiments.distill import lockstep_groups, student_runs, teacher_twins

if TYPE_CHECKING:  # torch is imported lazily: every `lspipe` command builds this module's parser
    import numpy as np
    import torch

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
NUM_CLASSES = 10
SGD = {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}


# --------------------------------------------------------------------------- machine


def machine_info(device: torch.device) -> dict:
    """CPU model, cores, library versions and the GPU (if any) of this run."""
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu or platform.machine(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "gpu": None,
        "cuda": None,
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover - torchvision is a dependency
        info["torchvision"] = None
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]  # other jobs share the machine?
    except OSError:  # pragma: no cover - not on every platform
        info["load_average"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- data


def random_cifar(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random uint8 images (N x 3 x 32 x 32) and labels in 0..9."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
            rng.integers(0, NUM_CLASSES, n).astype(np.int64))


class CifarLikeDataset:
    """What ``torchvision.datasets.CIFAR10`` does per item: HWC uint8 -> PIL image -> transform."""

    def __init__(self, x_nhwc: np.ndarray, y: np.ndarray, transform):
        self.data, self.targets, self.transform = x_nhwc, [int(t) for t in y], transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# --------------------------------------------------------------------------- the two loops


def time_baseline(arch: str, x: np.ndarray, y: np.ndarray, *, batch_size: int, warmup: int, steps: int,
                  workers: int, device: torch.device, seed: int = 0) -> dict:
    """images/s of the conventional torchvision + DataLoader loop (fp32, one model)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision.transforms as T

    from lspipe.core import models  # torch: only when a benchmark runs

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(CIFAR_MEAN, CIFAR_STD)])
    ds = CifarLikeDataset(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y, transform)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed),
    )
    if len(loader) < warmup + steps:
        raise ValueError(f"{len(ds)} images give {len(loader)} batches < warmup + steps = {warmup + steps}")
    torch.manual_seed(seed)
    model = models.create(arch, NUM_CLASSES, 3, 32).to(device).train()
    opt = torch.optim.SGD(model.parameters(), **SGD)
    it = iter(loader)
    marks = []
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            marks.append(time.perf_counter())
        xb, yb = next(it)  # waiting for the workers is part of the step
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        loss = F.cross_entropy(model.classifier(model.body(xb)), yb)  # inputs already normalised
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup and device.type != "cuda":  # CPU steps are synchronous: time each one
            marks.append(time.perf_counter())
    _sync(device)
    if device.type == "cuda":
        marks.append(time.perf_counter())
    del it, loader  # stop the workers before anything else is timed
    return _figures(marks, steps, batch_size) | {
        "config": {"loader": "torchvision transforms + DataLoader", "num_workers": workers,
                   "pin_memory": device.type == "cuda", "precision": "fp32", "memory_format": "contiguous"},
    }


def _figures(marks: list[float], steps: int, batch_size: int, models_per_step: int = 1) -> dict:
    """Rates from time marks: one per step (CPU) or the two ends of the timed window (CUDA).

    With per-step marks the headline uses the median step time, robust to other jobs' bursts on
    a shared machine; the window mean is reported too.
    """
    seconds = marks[-1] - marks[0]
    per_step = [b - a for a, b in zip(marks, marks[1:])] if len(marks) == steps + 1 else [seconds / steps]
    typical = statistics.median(per_step)
    images = batch_size * models_per_step
    return {
        "images_per_s": images / typical,
        "images_per_s_mean": images * steps / seconds,
        "images_per_s_best": images / min(per_step),
        "step_ms": 1000.0 * typical,
        "step_ms_all": [round(1000.0 * t, 2) for t in per_step] if len(per_step) > 1 else None,
        "timed_steps": steps,
        "seconds": seconds,
        "timing": "median step" if len(per_step) > 1 else "window mean (device-synchronised at both ends)",
    }


class _StepTimer:
    """A :class:`lspipe.engine.training.Callback` timing steps ``warmup+1 .. warmup+steps``: a mark after every
    step on the CPU (steps are synchronous there), device-synchronised marks at both ends on CUDA."""

    def __init__(self, warmup: int, steps: int, device: torch.device):
        self.warmup, self.end, self.device, self.marks = warmup, warmup + steps, device, []

    def _mark(self, step):
        if self.device.type != "cuda" or step in (self.warmup, self.end):
            if step in (self.warmup, self.end):
                _sync(self.device)
            self.marks.append(time.perf_counter())

    def on_start(self, model, step):
        if self.warmup == 0:
            self._mark(0)

    def on_step(self, model, step):
        if self.warmup <= step <= self.end:
            self._mark(step)

    def on_checkpoint(self, step): ...
    def on_end(self, model, step): ...


def _engine_data(x: np.ndarray, y: np.ndarray):
    import numpy as np

    n_val = min(len(y), 256)
    return Prepared(
        x={"train": x, "val": x[:n_val], "test": x[:n_val]},
        y={"train": y, "val": y[:n_val], "test": y[:n_val]},
        index={s: np.arange(len(y) if s == "train" else n_val) for s in ("train", "val", "test")},
        classes=[str(i) for i in range(NUM_CLASSES)], mean=np.array(CIFAR_MEAN), std=np.array(CIFAR_STD),
        meta={"name": "random-cifar"},
    )


def time_engine(arch: str, x: np.ndarray, y: np.ndarray, *, batch_size: int, warmup: int, steps: int,
                device: torch.device, recipe_overrides: dict, fuse: int = 0, seed: int = 0) -> dict:
    """images/s of :func:`lspipe.engine.training.train_group` (``fuse`` > 1: that many models trained fused)."""
    from lspipe.core.losses import Objective  # torch: only when a benchmark runs
    from lspipe.engine.training import train_group

    data = _engine_data(x, y)
    recipe = Recipe.from_dict({
        "steps": warmup + steps, "batch_size": batch_size, **SGD, "augment": {"pad": 4, "flip": True},
        "eval_batch_size": 256, **recipe_overrides,
    })
    members = max(fuse, 1)
    timer = _StepTimer(warmup, steps, device)
    with tempfile.TemporaryDirectory(prefix="lspipe-bench-") as tmp:
        train_group(arch, data, recipe, Objective([{"kind": "ls"}] * members), seed=seed, fuse=fuse > 1, device=device,
                    checkpoint_path=Path(tmp) / "ckpt", metrics_paths=[Path(tmp) / f"m{i}.csv" for i in range(members)],
                    callbacks=[timer], progress=False)
    return _figures(timer.marks, steps, batch_size, max(fuse, 1)) | {"config": {
        "loader": "lspipe.engine.training.fit (uint8 on device, batched augmentation, no workers)",
        "recipe": {k: getattr(recipe, k) for k in ("amp", "channels_last", "cpu_amp", "cpu_channels_last",
                                                     "compile", "compile_mode")},
        "precision": "bf16 autocast" if (recipe.amp if device.type == "cuda" else recipe.cpu_amp) else "fp32",
        "memory_format": "channels_last" if (recipe.channels_last if device.type == "cuda"
                                             else recipe.cpu_channels_last) else "contiguous",
        **({"fused_models": fuse} if fuse > 1 else {}),
    }}


# --------------------------------------------------------------------------- the distillation case

PAPER_TEMPERATURES = (1.0, 2.0, 3.0, 4.0, 8.0, 12.0, 16.0)
DISTILL_MODES = ("separate", "lockstep", "fused")


def time_distillation(teacher_arch: str, student_arch: str, temperatures, x: np.ndarray, y: np.ndarray, *,
                      mode: str, batch_size: int, warmup: int, steps: int, device: torch.device,
                      recipe_overrides: dict | None = None, seed: int = 0) -> dict:
    """Student-images/s of the hard-target teacher's temperature family trained ``mode``:

    * ``separate``: one distilled student (a ``kd`` objective, :mod:`lspipe.core.losses`, its own teacher
      forward per batch) through :func:`lspipe.engine.training.train_group`, as each student of the family
      trains alone; the G runs of the family are identical in cost, so the family's rate is this run's;
    * ``lockstep`` / ``fused``: the G students in one :func:`lspipe.engine.training.train_group` job
      (one teacher forward per batch; ``fused``: the students as one fused network).

    Images count once per student (G per lockstep step), so the rates compare directly.
    """
    import torch

    from lspipe.core.losses import Objective  # torch: only when a benchmark runs
    from lspipe.core.models import build_model
    from lspipe.engine.training import train_group

    if mode not in DISTILL_MODES:
        raise ValueError(f"mode must be one of {DISTILL_MODES}, got {mode!r}")
    data = _engine_data(x, y)
    recipe = Recipe.from_dict({
        "steps": warmup + steps, "batch_size": batch_size, **SGD, "augment": {"pad": 4, "flip": True},
        "eval_batch_size": 256, **(recipe_overrides or {}),
    })
    torch.manual_seed(seed + 100)
    teacher = build_model(teacher_arch, data).to(device).eval()
    timer = _StepTimer(warmup, steps, device)
    temps = [float(t) for t in temperatures]
    with tempfile.TemporaryDirectory(prefix="lspipe-bench-") as tmp:
        group = temps[-1:] if mode == "separate" else temps
        objective = Objective([{"kind": "kd", "teacher": "teacher", "T": t} for t in group], {"teacher": teacher})
        train_group(student_arch, data, recipe, objective, seed=seed, fuse=mode == "fused", device=device,
                    checkpoint_path=Path(tmp) / "ckpt", metrics_paths=[Path(tmp) / f"m{i}.csv" for i in range(len(group))],
                    progress=False, callbacks=[timer])
    models = 1 if mode == "separate" else len(temps)
    return _figures(timer.marks, steps, batch_size, models) | {"mode": mode, "students_per_step": models}


def run_distillation_benchmark(teacher_arch: str = "resnet56", student_arch: str = "alexnet",
                               temperatures=PAPER_TEMPERATURES, *, modes=DISTILL_MODES,
                               batch_size: int = defaults.default("recipes.*.batch_size"), warmup: int = 2,
                               steps: int = 5, repeats: int = 1, device: str = defaults.default("device"), seed: int = 0,
                               log=print) -> dict:
    """The distillation case: the T family trained separately, in lockstep and fused, in this process.

    Modes are interleaved over ``repeats`` (slow drifts of a shared machine hit each alike); each
    mode's rate is the median over repeats, and ``ratios`` divide it by the separate runs' rate.
    """
    from lspipe.core.inference import resolve_device  # torch: only when a benchmark runs

    dev = resolve_device(device)
    x, y = random_cifar(batch_size * (warmup + steps), seed)
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(repeats):
        for m in modes:
            fig = time_distillation(teacher_arch, student_arch, temperatures, x, y, mode=m, batch_size=batch_size,
                                    warmup=warmup, steps=steps, device=dev, seed=seed)
            runs[m].append(fig)
            log(f"  distillation {teacher_arch}->{student_arch} x{len(temperatures)} {m:9s} "
                f"{fig['images_per_s']:8.1f} student-images/s  ({fig['step_ms']:.0f} ms/step)")
    res = {"teacher_arch": teacher_arch, "student_arch": student_arch, "temperatures": [float(t) for t in temperatures],
           "batch_size": batch_size, "warmup_steps": warmup, "timed_steps": steps, "repeats": repeats,
           "machine": machine_info(dev), "modes": {}}
    for m, figs in runs.items():
        res["modes"][m] = {"images_per_s": statistics.median(f["images_per_s"] for f in figs),
                           "images_per_s_best": max(f["images_per_s_best"] for f in figs),
                           "step_ms": statistics.median(f["step_ms"] for f in figs),
                           "images_per_s_runs": [f["images_per_s"] for f in figs],
                           "step_ms_all": [f["step_ms_all"] for f in figs]}
    if "separate" in res["modes"]:
        base = res["modes"]["separate"]["images_per_s"]
        res["ratios"] = {m: r["images_per_s"] / base for m, r in res["modes"].items()}
        # the fastest step of each mode: the least disturbed by other jobs on a shared machine
        best = res["modes"]["separate"]["images_per_s_best"]
        res["ratios_best_step"] = {m: r["images_per_s_best"] / best for m, r in res["modes"].items()}
    return res


def format_distillation(res: dict) -> str:
    m = res["machine"]
    lines = [f"distillation: {res['teacher_arch']} teacher -> {len(res['temperatures'])} {res['student_arch']} students "
             f"(T = {', '.join(f'{t:g}' for t in res['temperatures'])}), batch {res['batch_size']}, "
             f"{res['warmup_steps']} warm-up + {res['timed_steps']} timed steps, {res['repeats']} repeat(s); "
             f"{m['cpu']}, {m['torch_threads']} torch threads, GPU: {m['gpu'] or 'none'}", "",
             "| mode | student-images/s (median step) | ms per step | vs. separate | best step: student-images/s | "
             "vs. separate |", "|---|---|---|---|---|---|"]
    for mode, r in res["modes"].items():
        ratio, rbest = res.get("ratios", {}).get(mode), res.get("ratios_best_step", {}).get(mode)
        lines.append(f"| {mode} | {r['images_per_s']:.1f} | {r['step_ms']:.0f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}x'} | {r['images_per_s_best']:.1f} | "
                     f"{'' if rbest is None else f'{rbest:.2f}x'} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the benchmark


def engine_variants(device: torch.device, compile_: bool, compile_mode: str | None, cpu_bf16: bool) -> dict[str, dict]:
    """Name -> recipe overrides of each engine configuration measured on ``device``."""
    comp = {"compile": True, "compile_mode": compile_mode} if compile_ else {}
    if device.type == "cuda":
        return {"bf16+cl" + ("+compile" if compile_ else ""): {"amp": True, "channels_last": True, **comp}}
    out = {"fp32": {"cpu_amp": False, "cpu_channels_last": False},
           "fp32+cl": {"cpu_amp": False, "cpu_channels_last": True}}
    if cpu_bf16:
        out["bf16+cl"] = {"cpu_amp": True, "cpu_channels_last": True}
    return {k + ("+compile" if compile_ else ""): v | comp for k, v in out.items()}


def run_benchmark(archs, *, batch_size: int = defaults.default("recipes.*.batch_size"), warmup: int = 3,
                  steps: int = 10, workers: int | None = None, device: str = defaults.default("device"), repeats: int = 1,
                  compile_: bool = False, compile_mode: str | None = None, cpu_bf16: bool = False, fuse: int = 0,
                  seed: int = 0, log=print) -> dict:
    import torch

    from lspipe.core import models  # torch: only when a benchmark runs
    from lspipe.core.inference import resolve_device  # torch: only when a benchmark runs

    dev = resolve_device(device)
    workers = default_workers() if workers is None else workers
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # both loops; the conventional setting
    x, y = random_cifar(batch_size * (warmup + steps), seed)
    variants = engine_variants(dev, compile_, compile_mode, cpu_bf16)
    out = {
        "machine": machine_info(dev),
        "settings": {"archs": list(archs), "batch_size": batch_size, "warmup_steps": warmup, "timed_steps": steps,
                     "repeats": repeats, "num_workers": workers, "images": len(y), "image_shape": [3, 32, 32],
                     "num_classes": NUM_CLASSES, "sgd": SGD, "seed": seed, "fuse": fuse,
                     "cudnn_benchmark": dev.type == "cuda"},
        "results": [],
    }
    for arch in archs:
        runs: dict[str, list[dict]] = {}
        log(f"{arch}: load average {out['machine']['load_average']}")

        def record(name, fig):
            runs.setdefault(name, []).append(fig)
            log(f"  {arch:10s} {name:22s} {fig['images_per_s']:10.1f} images/s  ({fig['step_ms']:.1f} ms/step)")

        for r in range(repeats):  # interleaved, so slow drifts of a shared machine hit every configuration
            record("baseline", time_baseline(arch, x, y, batch_size=batch_size, warmup=warmup, steps=steps,
                                             workers=workers, device=dev, seed=seed))
            for name, over in variants.items():
                record(f"engine:{name}", time_engine(arch, x, y, batch_size=batch_size, warmup=warmup, steps=steps,
                                                     device=dev, recipe_overrides=over, seed=seed))
            if fuse > 1:
                best = max(variants, key=lambda v: runs[f"engine:{v}"][-1]["images_per_s"])
                record(f"fused{fuse}:{best}", time_engine(arch, x, y, batch_size=batch_size, warmup=warmup,
                                                          steps=steps, device=dev, recipe_overrides=variants[best],
                                                          fuse=fuse, seed=seed))

        def summary(name):
            figs = runs[name]
            med = statistics.median(f["images_per_s"] for f in figs)
            return {"images_per_s": med, "step_ms": statistics.median(f["step_ms"] for f in figs),
                    "images_per_s_mean": statistics.median(f["images_per_s_mean"] for f in figs),
                    "images_per_s_best": max(f["images_per_s_best"] for f in figs),
                    "images_per_s_runs": [f["images_per_s"] for f in figs], "timing": figs[0]["timing"],
                    "runs": [{k: v for k, v in f.items() if k != "config"} for f in figs], "config": figs[0]["config"]}

        base = summary("baseline")
        engines = {name: summary(f"engine:{name}") for name in variants}
        for e in engines.values():
            e["ratio"] = e["images_per_s"] / base["images_per_s"]
        same_precision = {k: v for k, v in engines.items() if v["config"]["precision"] == "fp32"} or engines
        if dev.type == "cuda":
            same_precision = engines  # bf16 autocast is the engine's CUDA configuration
        head = max(same_precision, key=lambda k: same_precision[k]["images_per_s"])
        res = {
            "arch": arch,
            "parameters": models.count_parameters(models.create(arch, NUM_CLASSES, 3, 32)),
            "baseline": base,
            "engine": {**engines[head], "variant": head},
            "engine_variants": engines,
            "ratio": engines[head]["images_per_s"] / base["images_per_s"],
        }
        if fuse > 1:
            fname = next(k for k in runs if k.startswith("fused"))
            fz = summary(fname)
            single = engines[fname.split(":", 1)[1]]["images_per_s"]
            res["fused"] = {**fz, "models": fuse, "variant": fname.split(":", 1)[1],
                            "speedup_vs_sequential": fz["images_per_s"] / single}
        out["results"].append(res)
    out["machine"]["load_average_end"] = machine_info(dev)["load_average"]
    return out


def format_report(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"machine: {m['cpu']} ({m['arch']}, {m['cores']} cores, {m['torch_threads']} torch threads), "
        f"torch {m['torch']}, GPU: {m['gpu'] or 'none'}; load average {m.get('load_average')} at the start, "
        f"{m.get('load_average_end')} at the end",
        f"batch {res['settings']['batch_size']}, {res['settings']['warmup_steps']} warm-up + "
        f"{res['settings']['timed_steps']} timed steps, {res['settings']['repeats']} repeat(s), "
        f"baseline DataLoader workers: {res['settings']['num_workers']}; images/s from the median step "
        f"(CPU; in brackets: window mean / best step) or the synchronised window (CUDA)",
        "",
        "| arch | baseline images/s | engine variant | engine images/s | engine / baseline |",
        "|---|---|---|---|---|",
    ]
    for r in res["results"]:
        for name, e in r["engine_variants"].items():
            mark = " (headline)" if name == r["engine"]["variant"] else ""
            b = r["baseline"]
            lines.append(f"| {r['arch']} | {b['images_per_s']:.1f} ({b.get('images_per_s_mean', 0):.1f} / "
                         f"{b.get('images_per_s_best', 0):.1f}) | {name}{mark} | {e['images_per_s']:.1f} "
                         f"({e.get('images_per_s_mean', 0):.1f} / {e.get('images_per_s_best', 0):.1f}) | "
                         f"{e['ratio']:.2f}x |")
        if "fused" in r:
            f = r["fused"]
            lines.append(f"| {r['arch']} | | {f['models']} fused ({f['variant']}) | {f['images_per_s']:.1f} model-images/s | "
                         f"{f['speedup_vs_sequential']:.2f}x vs. {f['models']} sequential runs |")
    lines.append("")
    lines += [f"{r['arch']}: engine / baseline = {r['ratio']:.2f}x" for r in res["results"]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- projection


def flops_per_image(arch: str, image_size: int, num_classes: int, in_channels: int = 3) -> dict:
    return dict(_flops_per_image(arch, image_size, num_classes, in_channels))


@functools.lru_cache(maxsize=None)
def _flops_per_image(arch: str, image_size: int, num_classes: int, in_channels: int) -> dict:
    """FLOPs of one training image (forward + backward) and of its forward alone, counted by
    ``torch.utils.flop_counter`` on the model itself at ``image_size`` (matrix multiplications and
    convolutions, 2 FLOPs per multiply-add; element-wise work is not counted). The model and the batch
    of two (BatchNorm trains on more than one value per channel) live on the ``meta`` device: shapes
    only, no arithmetic, so Inception-v4 at 299 px is counted in a fraction of a second."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lspipe.core import models

    with torch.device("meta"):
        model = models.create(arch, num_classes, in_channels, image_size).train()
        x = torch.zeros(2, in_channels, image_size, image_size, dtype=torch.uint8)
    with FlopCounterMode(display=False) as fwd:
        model(x)
    with FlopCounterMode(display=False) as both:
        model(x).float().sum().backward()
    return {"forward": fwd.get_total_flops() / 2, "train": both.get_total_flops() / 2}


def _num_classes(ds: dict) -> int:
    """Classes of a configured dataset, for the FLOP count (only the logit layer depends on it: a few
    MFLOPs of Inception-v4's 73 GFLOPs): CIFAR-100's 100, the class folders of an ImageFolder tree that
    exists here, ImageNet's 1000 for one that does not, 10 otherwise."""
    if ds.get("source") == "cifar100":
        return 100
    if ds.get("source") == "imagefolder":
        root = Path(ds["root"]) / "train" if ds.get("root") else None
        if root is not None and root.is_dir():
            return max(1, sum(1 for p in root.iterdir() if p.is_dir()))
        return 1000
    return 10


def project(cfg: dict, figures: dict) -> dict:
    """Projected training wall time of a config's grids from measured engine images/s.

    A grid of R runs of S steps at batch B processes ``R * S * B`` training images; at the
    engine's measured rate ``v`` (images/s of that architecture, batch 128) that takes
    ``R * S * B / v`` seconds one after the other on one device (``/ speedup`` for grids trained
    fused, when the figures hold a fused measurement). A distilled student also runs its teacher
    forward on every batch: counted as a third of a teacher training step (forward : backward
    ~ 1 : 2); students in lockstep (``distillation[].lockstep``) share it, one forward per step of
    each lockstep job. The config is read as written, not validated: keys left out take the schema's
    defaults (:mod:`lspipe.base.defaults`). Student baselines that are a teacher's training run
    (:func:`lspipe.experiments.distill.teacher_twins`) are trained once, as teachers, and not counted again.
    Validation, dumps and evaluation are left out (a few % on CIFAR).

    An architecture the figures do not measure is projected from its FLOP count when the figures hold
    ``sustained_tflops`` (the training FLOP/s one GPU sustains, 1e12 FLOP/s; assumed or measured): its rate is
    ``sustained_tflops * 1e12 / flops_per_image(arch, image_size)["train"]`` images/s per GPU at the
    grid's dataset's ``image_size``. Rates are per GPU, so ``hours`` are GPU-hours; a model trained on
    N GPUs (``resources.gpus_per_model``, ``teachers[].gpus_per_model``) takes ``hours / N`` of wall time
    (``wall_hours_per_run``: DDP assumed to scale linearly; auto counts as one GPU).
    """
    res = {r["arch"]: r for r in figures["results"]}
    rows = []
    flop_rates: dict = {}
    tflops = figures.get("sustained_tflops")

    def dataset(name):
        return defaults.fill("datasets.*", cfg["datasets"][name])

    def rate(arch, ds_name=None):
        if arch in res:
            return res[arch]["engine"]["images_per_s"]
        if not tflops or ds_name is None:
            return None
        ds = dataset(ds_name)
        key = (arch, ds["image_size"])
        if key not in flop_rates:
            fl = flops_per_image(arch, ds["image_size"], _num_classes(ds), ds["channels"])
            flop_rates[key] = {"arch": arch, "image_size": ds["image_size"], "train_gflops": fl["train"] / 1e9,
                               "forward_gflops": fl["forward"] / 1e9, "images_per_s": tflops * 1e12 / fl["train"]}
        return flop_rates[key]["images_per_s"]

    def seconds(arch, images, ds_name=None):
        r = rate(arch, ds_name)
        return images / r if r else None

    gpus_default = cfg.get("resources", {}).get("gpus_per_model", defaults.default("resources.gpus_per_model"))

    def gpus_of(value):
        return value if isinstance(value, int) and value >= 1 else 1

    def recipe(name):  # this config is not validated: keys left out take the schema's defaults
        return defaults.fill("recipes.*", cfg["recipes"][name])

    for g in cfg["teachers"]:
        g, rec = defaults.fill("teachers[]", g), recipe(g["recipe"])
        runs = (len(g["alphas"]) + len(g["objectives"])) * len(g["seeds"])
        images = runs * rec["steps"] * rec["batch_size"]
        sec = seconds(g["arch"], images, g["dataset"])
        fused = res.get(g["arch"], {}).get("fused")
        if sec is not None and g["fuse"] and fused:
            sec /= fused["speedup_vs_sequential"]
        gpus = gpus_of(gpus_default if g.get("gpus_per_model") is None else g["gpus_per_model"])
        rows.append({"grid": f"teachers {g['dataset']}/{g['arch']}", "arch": g["arch"], "runs": runs,
                     "steps": rec["steps"], "batch_size": rec["batch_size"], "images": images,
                     "fused": bool(g["fuse"]), "hours": None if sec is None else sec / 3600,
                     "gpus_per_model": gpus,
                     "wall_hours_per_run": None if sec is None else sec / 3600 / runs / gpus,
                     "rate_source": "measured" if g["arch"] in res else ("flops" if sec is not None else None)})
    for d in cfg.get("distillation", defaults.default("distillation")):
        d = defaults.fill("distillation[]", d)
        rec = recipe(d["student_recipe"])
        twins = teacher_twins(d, cfg["teachers"], cfg["recipes"])  # trained once, as teachers (above)
        runs = [r for r in student_runs(d) if r.name not in twins]
        n_kd = sum(r.distilled for r in runs)
        # one teacher forward per step of each lockstep job, not one per student
        n_forwards = n_kd - sum(len(g["runs"]) - 1 for g in lockstep_groups(d, twins) if g["family"] == "kd_hard")
        per_run = rec["steps"] * rec["batch_size"]
        sec = seconds(d["student_arch"], len(runs) * per_run, d["dataset"])
        teacher_sec = seconds(d["teacher_arch"], n_forwards * per_run, d["dataset"])
        total = None if sec is None or teacher_sec is None else sec + teacher_sec / 3
        rows.append({"grid": f"students {d['dataset']}/{d['student_arch']} (teacher {d['teacher_arch']})",
                     "arch": d["student_arch"], "runs": len(runs), "distilled_runs": n_kd,
                     "teacher_forward_runs": n_forwards, "lockstep": bool(d["lockstep"]), "steps": rec["steps"],
                     "batch_size": rec["batch_size"], "images": len(runs) * per_run, "fused": False,
                     "hours": None if total is None else total / 3600, "gpus_per_model": gpus_of(gpus_default),
                     "wall_hours_per_run": None if total is None else total / 3600 / len(runs) / gpus_of(gpus_default),
                     "rate_source": "measured" if d["student_arch"] in res else ("flops" if total is not None else None)})
    known = [r["hours"] for r in rows if r["hours"] is not None]
    return {"device": figures["machine"]["gpu"] or figures["machine"]["cpu"], "rows": rows,
            "rates": {a: r["engine"]["images_per_s"] for a, r in res.items()},
            "sustained_tflops": tflops, "flop_rates": list(flop_rates.values()),
            "measured_batch_size": figures["settings"].get("batch_size"),
            "total_hours": sum(known) if len(known) == len(rows) else None,
            "total_wall_hours": (sum(r["wall_hours_per_run"] * r["runs"] for r in rows)
                                 if len(known) == len(rows) else None),
            "missing_archs": sorted({r["arch"] for r in rows if r["hours"] is None})}


def format_projection(pr: dict) -> str:
    rates = ", ".join(f"{a} {v:,.0f}" for a, v in pr["rates"].items())
    lines = [f"projected sequential training time on {pr['device']}"
             + (f" (engine images/s on 3x32x32 images at batch {pr['measured_batch_size']}: {rates})" if rates else "")
             + ":"]
    for f in pr.get("flop_rates", []):
        lines.append(f"  {f['arch']} at {f['image_size']} px: {f['forward_gflops']:.2f} GFLOP forward, "
                     f"{f['train_gflops']:.2f} GFLOP per training image (torch.utils.flop_counter) at "
                     f"{pr['sustained_tflops']:g} TFLOP/s sustained per GPU -> {f['images_per_s']:,.0f} images/s per GPU")
    lines += ["", "| grid | runs | steps x batch | images | GPU-hours | GPUs per model | wall hours per run |",
              "|---|---|---|---|---|---|---|"]
    for r in pr["rows"]:
        h = "not measured" if r["hours"] is None else f"{r['hours']:,.1f}"
        w = "" if r.get("wall_hours_per_run") is None else f"{r['wall_hours_per_run']:,.2f}"
        src = " (from FLOPs)" if r.get("rate_source") == "flops" else ""
        lines.append(f"| {r['grid']}{' (fused)' if r['fused'] else ''} | {r['runs']} | {r['steps']} x "
                     f"{r['batch_size']} | {r['images']:.3g} | {h}{src} | {r['gpus_per_model']} | {w} |")
    total = "n/a (archs not measured: " + ", ".join(pr["missing_archs"]) + ")" if pr["total_hours"] is None \
        else (f"{pr['total_hours']:,.1f} GPU-hours ({pr['total_hours'] / 24:,.1f} days); one model after another, "
              f"each on its GPUs: {pr['total_wall_hours']:,.1f} h")
    lines.append(f"\ntotal: {total}")
    return "\n".join(lines)


def cmd_bench(a):
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    if a.smoke:  # seconds: tiny model and batch, a couple of steps; checks the plumbing, not speed
        archs, bs, warmup, steps = a.archs or ["resnet8", "smallcnn"], a.batch_size or 16, 1, 2
        workers = 1 if a.workers is None else a.workers
    else:
        archs, bs, warmup, steps, workers = (a.archs or ["resnet56", "alexnet"], a.batch_size or 128, a.warmup,
                                             a.steps, a.workers)
    if a.figures:  # project from earlier figures, measure nothing
        import json

        res = json.loads(Path(a.figures).read_text())
    elif a.distill_only:
        res = None
    else:
        res = run_benchmark(archs, batch_size=bs, warmup=warmup, steps=steps, workers=workers, device=a.device,
                            repeats=a.repeats, compile_=a.compile, compile_mode=a.compile_mode, cpu_bf16=a.cpu_bf16,
                            fuse=a.fuse, log=lambda s: print(s, file=sys.stderr, flush=True))
        res["settings"]["smoke"] = bool(a.smoke)
    if a.distill or a.distill_only:
        tarch, sarch = a.distill_archs or (["resnet8", "smallcnn"] if a.smoke else ["resnet56", "alexnet"])
        dres = run_distillation_benchmark(tarch, sarch, a.temperatures or ((1, 2) if a.smoke else PAPER_TEMPERATURES),
                                          batch_size=bs, warmup=1 if a.smoke else a.warmup, steps=steps,
                                          repeats=a.repeats, device=a.device,
                                          log=lambda s: print(s, file=sys.stderr, flush=True))
        if res is None:
            res = {"machine": dres["machine"], "settings": {"batch_size": bs, "smoke": bool(a.smoke)}, "results": []}
        res["distillation"] = dres
    if res["results"] and not res.get("assumed"):  # assumed rates (--figures) have no measurement to report
        print(format_report(res))
    if "distillation" in res:
        print(format_distillation(res["distillation"]))
    if a.project:
        import yaml

        if a.gpu_tflops is not None:  # FLOP-based rates for the architectures not measured
            res["sustained_tflops"] = a.gpu_tflops
        res["projection"] = project(yaml.safe_load(Path(a.project).read_text()), res)
        res["projection"]["config"] = str(a.project)
        print()
        print(format_projection(res["projection"]))
    if a.out:
        write_json(a.out, res)
        print(f"figures -> {a.out}")


def add_cli(sub) -> None:
    s = sub.add_parser("bench", help="training images/s: lspipe's engine vs. a torchvision DataLoader baseline",
                       description=__doc__.split("\n\n")[0])
    s.add_argument("--archs", nargs="+", default=None, help="architectures (default: resnet56 alexnet)")
    s.add_argument("--batch-size", type=int, default=None, help="default 128 (16 with --smoke)")
    s.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps per configuration")
    s.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    s.add_argument("--repeats", type=int, default=1, help="measure every configuration this many times (median)")
    s.add_argument("--workers", type=int, default=None, help="baseline DataLoader workers (default: cores, max 8)")
    s.add_argument("--device", default=defaults.default("device"),
                   help="'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    s.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    s.add_argument("--compile", action="store_true", help="engine with torch.compile")
    s.add_argument("--compile-mode", default=None,
                   help="torch.compile mode (e.g. reduce-overhead: CUDA graphs; max-autotune)")
    s.add_argument("--cpu-bf16", action="store_true", help="also measure the engine in bf16 autocast on the CPU")
    s.add_argument("--fuse", type=int, default=0, help="also time this many models trained fused")
    s.add_argument("--distill", action="store_true",
                   help="also time the distillation case: the hard teacher's T family separate vs. lockstep vs. fused")
    s.add_argument("--distill-only", action="store_true", help="time only the distillation case")
    s.add_argument("--distill-archs", nargs=2, default=None, metavar=("TEACHER", "STUDENT"),
                   help="architectures of the distillation case (default: resnet56 alexnet)")
    s.add_argument("--temperatures", nargs="+", type=float, default=None,
                   help="the distillation case's temperatures (default: the paper's 1 2 3 4 8 12 16)")
    s.add_argument("--smoke", action="store_true", help="seconds: tiny models and steps (tests)")
    s.add_argument("--out", default=None, help="write the figures as JSON")
    s.add_argument("--project", default=None, metavar="CONFIG",
                   help="also project the training wall time of this config's grids (e.g. workflow/presets/paper.yaml)")
    s.add_argument("--figures", default=None, metavar="JSON",
                   help="use the figures of an earlier run (its --out) instead of measuring")
    s.add_argument("--gpu-tflops", type=float, default=None, metavar="TFLOPS",
                   help="--project: training FLOP/s (1e12) one GPU sustains; architectures the figures do not measure "
                        "are projected from their FLOP count at it (default: the figures' sustained_tflops, if any)")
    s.set_defaults(func=cmd_bench)
