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
``--project`` projects a config's training time from the figures (:func:`project`). Figures are
printed and written as JSON (``--out``) with the machine they came from.
"""

from __future__ import annotations

import functools
import math
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


# --------------------------------------------------------------------------- timing


class StepClock:
    """Per-step times: a CUDA event recorded after each step on CUDA (the GPU's own timeline, idle gaps
    included), ``time.perf_counter`` on the CPU (steps are synchronous there). :meth:`mark` after each
    step; :meth:`step_seconds` the times between consecutive marks."""

    def __init__(self, device: torch.device):
        import torch

        self.device, self.cuda, self.marks = device, device.type == "cuda", []
        self._event = (lambda: torch.cuda.Event(enable_timing=True)) if self.cuda else None

    def mark(self) -> None:
        if self.cuda:
            ev = self._event()
            ev.record()
            self.marks.append(ev)
        else:
            self.marks.append(time.perf_counter())

    def step_seconds(self) -> list[float]:
        if self.cuda:
            self.marks[-1].synchronize()
            return [a.elapsed_time(b) / 1000.0 for a, b in zip(self.marks, self.marks[1:])]
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def _figures(per_step: list[float], batch_size: int, models_per_step: int = 1, cuda: bool = False) -> dict:
    """Rates from per-step times: the headline uses the median step (robust to other jobs' bursts on a
    shared machine); the mean over the window (what a long run sees: loader stalls included) and the
    best step are reported too."""
    typical, images = statistics.median(per_step), batch_size * models_per_step
    return {
        "images_per_s": images / typical,
        "images_per_s_mean": images * len(per_step) / sum(per_step),
        "images_per_s_best": images / min(per_step),
        "step_ms": 1000.0 * typical,
        "step_ms_all": [round(1000.0 * t, 3) for t in per_step],
        "timed_steps": len(per_step),
        "seconds": sum(per_step),
        "timing": "median step (CUDA events)" if cuda else "median step (perf_counter)",
    }


# --------------------------------------------------------------------------- the two loops


def time_baseline(arch: str, x: np.ndarray, y: np.ndarray, *, batch_size: int, warmup: int, steps: int,
                  workers: int, device: torch.device, seed: int = 0) -> dict:
    """images/s of the conventional torchvision + DataLoader loop (fp32, one model).

    The DataLoader's workers start decoding when the loop starts; their head start (``workers`` x
    ``prefetch_factor`` batches) is spent in the warm-up, so that in the timed window each batch is
    decoded and augmented while the loop runs: the baseline's augmentation is inside its window, as
    the engine's is (``images_per_s_mean`` counts the loader's stalls)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision.transforms as T

    from lspipe.core import models  # torch: only when a benchmark runs

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(CIFAR_MEAN, CIFAR_STD)])
    prefetch = 2
    warmup = max(warmup, workers * prefetch + 2)  # the workers' head start, spent before the timer starts
    x, y = _cycle(x, y, batch_size * (warmup + steps))
    ds = CifarLikeDataset(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y, transform)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers, prefetch_factor=prefetch,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed), persistent_workers=False,
    )
    if len(loader) < warmup + steps:
        raise ValueError(f"{len(ds)} images give {len(loader)} batches < warmup + steps = {warmup + steps}")
    torch.manual_seed(seed)
    model = models.create(arch, NUM_CLASSES, 3, 32).to(device).train()
    opt = torch.optim.SGD(model.parameters(), **SGD)
    it = iter(loader)
    clock = StepClock(device)
    for i in range(warmup + steps):
        xb, yb = next(it)  # waiting for the workers is part of the step
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        loss = F.cross_entropy(model.classifier(model.body(xb)), yb)  # inputs already normalised
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup - 1:
            clock.mark()
    per_step = clock.step_seconds()
    del it, loader  # stop the workers before anything else is timed
    return _figures(per_step, batch_size, cuda=clock.cuda) | {
        "config": {"loader": "torchvision transforms + DataLoader", "num_workers": workers, "warmup_steps": warmup,
                   "pin_memory": device.type == "cuda", "precision": "fp32", "tf32": "PyTorch's defaults (cuDNN: on)",
                   "memory_format": "contiguous", "augmentation": "in the timed window (prefetch spent in warm-up)"},
    }


class _StepTimer:
    """A :class:`lspipe.engine.training.Callback` timing steps ``warmup+1 .. warmup+steps`` (a
    :class:`StepClock` mark after each step from step ``warmup`` on); with ``profile`` a short
    ``torch.profiler`` trace of the timed steps (:func:`_anatomy`)."""

    def __init__(self, warmup: int, steps: int, device: torch.device, profile: bool = False):
        self.warmup, self.end, self.clock = warmup, warmup + steps, StepClock(device)
        self.profile, self.prof, self.host = profile, None, None

    def on_start(self, model, step):
        if self.warmup == 0:
            self._begin()

    def _begin(self):
        self.clock.mark()
        if self.profile:
            import torch.profiler as tp

            acts = [tp.ProfilerActivity.CPU] + ([tp.ProfilerActivity.CUDA] if self.clock.cuda else [])
            self.prof = tp.profile(activities=acts)
            self.prof.__enter__()
            self.host = time.perf_counter()

    def on_step(self, model, step):
        if step == self.warmup:
            self._begin()
        elif self.warmup < step <= self.end:
            self.clock.mark()
            if step == self.end and self.prof is not None:
                _sync(self.clock.device)
                self.host = time.perf_counter() - self.host
                self.prof.__exit__(None, None, None)

    def on_checkpoint(self, step): ...
    def on_end(self, model, step): ...


def _anatomy(prof, steps: int, host_s: float) -> dict:
    """Kernels per step, host ms per step and GPU-busy ms per step of a ``torch.profiler`` trace."""
    from torch.autograd import DeviceType

    kernels = [e for e in prof.events() if getattr(e, "device_type", None) == DeviceType.CUDA]
    busy = sum(e.time_range.elapsed_us() for e in kernels) / 1000.0  # us -> ms
    return {"kernels_per_step": len(kernels) / steps, "gpu_busy_ms_per_step": busy / steps,
            "host_ms_per_step": 1000.0 * host_s / steps, "profiled_steps": steps}


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


def _graph_warmup(overrides: dict, device: torch.device) -> int:
    """Extra untimed steps of a variant that may capture a CUDA graph (eager steps, then the comparison)."""
    from lspipe.engine.step import GRAPH_COMPARE, GRAPH_WARMUP

    return GRAPH_WARMUP + GRAPH_COMPARE if device.type == "cuda" and overrides.get("cuda_graph") is not False else 0


def time_engine(arch: str, x: np.ndarray, y: np.ndarray, *, batch_size: int, warmup: int, steps: int,
                device: torch.device, recipe_overrides: dict, fuse: int = 0, seed: int = 0,
                objective: dict | None = None, profile: bool = False) -> dict:
    """images/s of :func:`lspipe.engine.training.train_group` (``fuse`` > 1: that many models trained fused;
    model-images/s), its peak GPU memory, the engine's settings and, with ``profile``, its anatomy."""
    import torch

    from lspipe.core.losses import Objective  # torch: only when a benchmark runs
    from lspipe.engine.training import train_group

    warmup += _graph_warmup(recipe_overrides, device)
    data = _engine_data(*_cycle(x, y, batch_size * (warmup + steps)))
    recipe = Recipe.from_dict({
        "steps": warmup + steps, "batch_size": batch_size, **SGD, "augment": {"pad": 4, "flip": True},
        "eval_batch_size": 256, **recipe_overrides,
    })
    members = max(fuse, 1)
    timer = _StepTimer(warmup, steps, device, profile)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory(prefix="lspipe-bench-") as tmp:
        _, summary = train_group(arch, data, recipe, Objective([objective or {"kind": "ls"}] * members), seed=seed,
                                 fuse=fuse > 1, device=device, checkpoint_path=Path(tmp) / "ckpt",
                                 metrics_paths=[Path(tmp) / f"m{i}.csv" for i in range(members)], callbacks=[timer],
                                 progress=False)
    out = _figures(timer.clock.step_seconds(), batch_size, members, timer.clock.cuda) | {"config": {
        "loader": "lspipe.engine.training.fit (uint8 on device, batched augmentation, no workers)",
        "recipe": {k: getattr(recipe, k) for k in ("precision", "channels_last", "cuda_graph", "cpu_amp",
                                                     "cpu_channels_last", "compile", "compile_mode", "grad_clip",
                                                     "loss_scale")},
        "engine": summary["engine"], "precision": summary["engine"]["precision"],
        "memory_format": "channels_last" if summary["engine"]["channels_last"] else "contiguous",
        **({"fused_models": fuse} if fuse > 1 else {}),
    }}
    out["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    if timer.prof is not None:
        out["anatomy"] = _anatomy(timer.prof, steps, timer.host)
    return out


def _cycle(x, y, n: int):
    """``n`` images and labels, the given ones repeated as needed (one epoch covers every timed step)."""
    import numpy as np

    reps = -(-n // len(y))
    return (np.concatenate([x] * reps)[:n], np.concatenate([y] * reps)[:n]) if reps > 1 else (x[:n], y[:n])


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

    Images count once per student (G per lockstep step), so the rates compare directly. The engine
    runs in its own settings for the device (on CUDA: precision auto, a CUDA graph when it captures).
    """
    import torch

    from lspipe.core.losses import Objective  # torch: only when a benchmark runs
    from lspipe.core.models import build_model
    from lspipe.engine.training import train_group

    if mode not in DISTILL_MODES:
        raise ValueError(f"mode must be one of {DISTILL_MODES}, got {mode!r}")
    warmup += _graph_warmup(recipe_overrides or {}, device)
    data = _engine_data(*_cycle(x, y, batch_size * (warmup + steps)))
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
        _, summary = train_group(student_arch, data, recipe, objective, seed=seed, fuse=mode == "fused", device=device,
                                 checkpoint_path=Path(tmp) / "ckpt",
                                 metrics_paths=[Path(tmp) / f"m{i}.csv" for i in range(len(group))],
                                 progress=False, callbacks=[timer])
    models = 1 if mode == "separate" else len(temps)
    return _figures(timer.clock.step_seconds(), batch_size, models, timer.clock.cuda) | {
        "mode": mode, "students_per_step": models, "engine": summary["engine"]}


def run_distillation_benchmark(teacher_arch: str = "resnet56", student_arch: str = "alexnet",
                               temperatures=PAPER_TEMPERATURES, *, modes=DISTILL_MODES,
                               batch_size: int = defaults.default("recipes.*.batch_size"), warmup: int = 2,
                               steps: int = 5, repeats: int = 1, device: str = defaults.default("device"), seed: int = 0,
                               log=print) -> dict:
    """The distillation case: the T family trained separately, in lockstep and fused, in this process.

    Modes are interleaved over ``repeats`` (slow drifts of a shared machine hit each alike); each
    mode's rate is the median over repeats, and ``ratios`` divide it by the separate runs' rate. A
    mode that fails is recorded (``errors``) and the others go on.
    """
    from lspipe.core.inference import resolve_device  # torch: only when a benchmark runs

    dev = resolve_device(device)
    x, y = random_cifar(batch_size * (warmup + steps), seed)
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for m in modes:
            try:
                fig = time_distillation(teacher_arch, student_arch, temperatures, x, y, mode=m, batch_size=batch_size,
                                        warmup=warmup, steps=steps, device=dev, seed=seed)
            except Exception as err:  # a figure, not the end of the benchmark
                errors[m] = _error(err)
                log(f"  distillation {m}: FAILED: {errors[m]}")
                continue
            runs[m].append(fig)
            log(f"  distillation {teacher_arch}->{student_arch} x{len(temperatures)} {m:9s} "
                f"{fig['images_per_s']:8.1f} student-images/s  ({fig['step_ms']:.1f} ms/step)")
    res = {"teacher_arch": teacher_arch, "student_arch": student_arch, "temperatures": [float(t) for t in temperatures],
           "batch_size": batch_size, "warmup_steps": warmup, "timed_steps": steps, "repeats": repeats,
           "machine": machine_info(dev), "modes": {}, **({"errors": errors} if errors else {})}
    for m, figs in runs.items():
        if not figs:
            continue
        res["modes"][m] = {"images_per_s": statistics.median(f["images_per_s"] for f in figs),
                           "images_per_s_best": max(f["images_per_s_best"] for f in figs),
                           "step_ms": statistics.median(f["step_ms"] for f in figs),
                           "images_per_s_runs": [f["images_per_s"] for f in figs],
                           "step_ms_all": [f["step_ms_all"] for f in figs], "engine": figs[-1]["engine"]}
    if "separate" in res["modes"]:
        base = res["modes"]["separate"]["images_per_s"]
        res["ratios"] = {m: r["images_per_s"] / base for m, r in res["modes"].items()}
        # the fastest step of each mode: the least disturbed by other jobs on a shared machine
        best = res["modes"]["separate"]["images_per_s_best"]
        res["ratios_best_step"] = {m: r["images_per_s_best"] / best for m, r in res["modes"].items()}
    return res


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:400]}"


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
        lines.append(f"| {mode} | {r['images_per_s']:.1f} | {r['step_ms']:.1f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}x'} | {r['images_per_s_best']:.1f} | "
                     f"{'' if rbest is None else f'{rbest:.2f}x'} |")
    for mode, why in res.get("errors", {}).items():
        lines.append(f"| {mode} | failed: {why} | | | | |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the benchmark

# The engine's configurations on CUDA: precision and layout, eager or as one CUDA graph
# (recipes.<name>.precision, channels_last, cuda_graph). "fp32" is strict float32 (no TF32).
CUDA_VARIANTS: dict[str, dict] = {
    "fp32": {"precision": "fp32", "channels_last": False, "cuda_graph": False},
    "fp32+cl": {"precision": "fp32", "channels_last": True, "cuda_graph": False},
    "tf32+cl": {"precision": "tf32", "channels_last": True, "cuda_graph": False},
    "bf16": {"precision": "bf16", "channels_last": False, "cuda_graph": False},
    "bf16+cl": {"precision": "bf16", "channels_last": True, "cuda_graph": False},
    "tf32+cl+graph": {"precision": "tf32", "channels_last": True, "cuda_graph": "auto"},
    "bf16+cl+graph": {"precision": "bf16", "channels_last": True, "cuda_graph": "auto"},
}


def engine_variants(device: torch.device, compile_: bool, compile_mode: str | None, cpu_bf16: bool,
                    names: list[str] | None = None) -> dict[str, dict]:
    """Name -> recipe overrides of each engine configuration measured on ``device`` (``names``: a subset)."""
    comp = {"compile": True, "compile_mode": compile_mode} if compile_ else {}
    if device.type == "cuda":
        out = dict(CUDA_VARIANTS)
        if compile_:  # torch.compile is never captured by the engine's own graph
            out = {"bf16+cl+compile": {"precision": "bf16", "channels_last": True, "cuda_graph": False, **comp}}
    else:
        out = {"fp32": {"cpu_amp": False, "cpu_channels_last": False},
               "fp32+cl": {"cpu_amp": False, "cpu_channels_last": True}}
        if cpu_bf16:
            out["bf16+cl"] = {"cpu_amp": True, "cpu_channels_last": True}
        out = {k + ("+compile" if compile_ else ""): v | comp for k, v in out.items()}
    if names:
        unknown = [n for n in names if n not in out]
        if unknown:
            raise ValueError(f"unknown engine variant(s) {unknown} on {device.type}; known: {', '.join(out)}")
        out = {n: out[n] for n in names}
    return out


def preset_recipes(path: str | Path | None, archs) -> dict[str, tuple[str, dict]]:
    """arch -> (recipe name, recipe) of a preset (``recipes.<arch>``; ResNets take ``resnet56``'s), for
    the archs it has a recipe for; the schedule and checkpointing keys are left out (the benchmark sets
    steps), and so are the GPU settings (each variant sets them)."""
    if not path:
        return {}
    import yaml

    recipes = yaml.safe_load(Path(path).read_text())["recipes"]
    drop = ("steps", "lr_milestones", "checkpoint_every", "eval_batch_size", "batch_size", "amp", "precision",
            "channels_last", "cuda_graph", "compile", "compile_mode", "cpu_amp", "cpu_channels_last")
    out = {}
    for arch in archs:
        name = arch if arch in recipes else ("resnet56" if arch.startswith("resnet") and "resnet56" in recipes else None)
        if name:
            out[arch] = (name, {k: v for k, v in recipes[name].items() if k not in drop})
    return out


def _summary(figs: list[dict]) -> dict:
    return {"images_per_s": statistics.median(f["images_per_s"] for f in figs),
            "step_ms": statistics.median(f["step_ms"] for f in figs),
            "images_per_s_mean": statistics.median(f["images_per_s_mean"] for f in figs),
            "images_per_s_best": max(f["images_per_s_best"] for f in figs),
            "images_per_s_runs": [f["images_per_s"] for f in figs], "timing": figs[0]["timing"],
            "peak_memory_mib": max((f.get("peak_memory_mib") or 0) for f in figs) or None,
            "runs": [{k: v for k, v in f.items() if k not in ("config", "anatomy")} for f in figs],
            "config": figs[0]["config"]}


class _Arch:
    """One architecture's measurements over the interleaved repeats: figures per configuration, errors."""

    def __init__(self, arch: str, log):
        self.arch, self.log, self.runs, self.errors, self.chosen = arch, log, {}, {}, None

    def record(self, name: str, fn) -> dict | None:
        try:
            fig = fn()
        except Exception as err:  # a configuration that fails is a figure, not the end of the benchmark
            self.errors[name] = _error(err)
            self.log(f"  {self.arch:10s} {name:24s} FAILED: {self.errors[name]}")
            return None
        self.runs.setdefault(name, []).append(fig)
        mem = f", {fig['peak_memory_mib']:,.0f} MiB" if fig.get("peak_memory_mib") else ""
        graph = fig.get("config", {}).get("engine", {}).get("cuda_graph")
        self.log(f"  {self.arch:10s} {name:24s} {fig['images_per_s']:10.1f} images/s  ({fig['step_ms']:.2f} ms/step"
                 f"{mem}{', graph' if graph else ''})")
        return fig

    def best(self, names) -> str | None:
        done = [n for n in names if self.runs.get(f"engine:{n}")]
        return max(done, key=lambda n: statistics.median(f["images_per_s"] for f in self.runs[f"engine:{n}"])) \
            if done else None


def run_benchmark(archs, *, batch_size: int = defaults.default("recipes.*.batch_size"), warmup: int = 3,
                  steps: int = 10, workers: int | None = None, device: str = defaults.default("device"), repeats: int = 1,
                  compile_: bool = False, compile_mode: str | None = None, cpu_bf16: bool = False, fuse=0,
                  seed: int = 0, variants: list[str] | None = None, presets: str | None = None,
                  anatomy: bool = False, out_path: str | None = None, log=print) -> dict:
    """The engine against the textbook loop, per architecture, every configuration interleaved over
    ``repeats`` (slow drifts of a machine hit each alike; medians over repeats): the baseline, each
    engine variant, the headline variant with the preset's recipe (``presets``), and ``fuse`` (a size
    or a list of sizes) models trained fused in the headline variant (with the preset's recipe when
    given), with peak memory. ``anatomy``: a ``torch.profiler`` trace of the headline variant.
    ``out_path``: the figures so far are written after every repeat (a run cut off keeps them)."""
    import torch

    from lspipe.core.inference import resolve_device  # torch: only when a benchmark runs

    dev = resolve_device(device)
    workers = default_workers() if workers is None else workers
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # both loops; the conventional setting
    sizes = [s for s in ([fuse] if isinstance(fuse, int) else list(fuse)) if s and s > 1]
    x, y = random_cifar(batch_size * (warmup + steps), seed)
    variant_over = engine_variants(dev, compile_, compile_mode, cpu_bf16, variants)
    recipes = preset_recipes(presets, archs)
    out = {
        "machine": machine_info(dev),
        "settings": {"archs": list(archs), "batch_size": batch_size, "warmup_steps": warmup, "timed_steps": steps,
                     "repeats": repeats, "num_workers": workers, "images": len(y), "image_shape": [3, 32, 32],
                     "num_classes": NUM_CLASSES, "sgd": SGD, "seed": seed, "fuse": sizes[0] if sizes else 0,
                     "fuse_sizes": sizes, "variants": list(variant_over), "presets": str(presets) if presets else None,
                     "cudnn_benchmark": dev.type == "cuda"},
        "results": [],
    }
    state = {arch: _Arch(arch, log) for arch in archs}
    timed = dict(batch_size=batch_size, warmup=warmup, steps=steps, device=dev, seed=seed)
    for r in range(repeats):  # interleaved, so slow drifts of a shared machine hit every configuration
        for arch in archs:
            st = state[arch]
            log(f"{arch}: repeat {r + 1}/{repeats}, load average {machine_info(dev)['load_average']}")
            st.record("baseline", lambda: time_baseline(arch, x, y, workers=workers, **timed))
            for name, over in variant_over.items():
                st.record(f"engine:{name}", lambda: time_engine(arch, x, y, recipe_overrides=over, **timed))
            best = st.chosen = st.chosen or st.best(variant_over)  # the fastest of the first repeat, kept after
            if best is None:
                continue
            rec = recipes.get(arch)
            if rec:
                st.record(f"preset:{best}", lambda: time_engine(arch, x, y, recipe_overrides={**rec[1], **variant_over[best]},
                                                                objective={"kind": "ls", "alpha": 0.1}, **timed))
            for g in sizes:
                over = {**(rec[1] if rec else {}), **variant_over[best]}
                st.record(f"fused{g}:{best}", lambda: time_engine(arch, x, y, recipe_overrides=over, fuse=g,
                                                                  objective={"kind": "ls", "alpha": 0.1}, **timed))
        out["results"] = [_arch_result(state[a], variant_over, recipes.get(a), sizes, dev) for a in archs]
        if out_path:
            write_json(out_path, out)
    if anatomy:  # the fastest eager variant and the fastest graph (host-bound or not, kernel by kernel)
        for arch in archs:
            st = state[arch]
            picks = dict.fromkeys(b for b in (st.best([v for v in variant_over if "graph" not in v]),
                                              st.best([v for v in variant_over if "graph" in v])) if b)
            for best in picks:
                fig = st.record(f"anatomy:{best}", lambda: time_engine(
                    arch, x, y, recipe_overrides=variant_over[best], profile=True, **{**timed, "steps": min(steps, 10)}))
                if fig and "anatomy" in fig:
                    res = out["results"][archs.index(arch)]
                    res.setdefault("anatomies", {})[best] = fig["anatomy"]
                    res.setdefault("anatomy", {"variant": best, **fig["anatomy"]})
    out["machine"]["load_average_end"] = machine_info(dev)["load_average"]
    return out


def _arch_result(st: _Arch, variant_over: dict, rec, sizes, dev) -> dict:
    from lspipe.core import models

    res = {"arch": st.arch, "parameters": models.count_parameters(models.create(st.arch, NUM_CLASSES, 3, 32)),
           "errors": dict(st.errors)}
    base = _summary(st.runs["baseline"]) if st.runs.get("baseline") else None
    engines = {n: _summary(st.runs[f"engine:{n}"]) for n in variant_over if st.runs.get(f"engine:{n}")}
    res["baseline"], res["engine_variants"] = base, engines
    for e in engines.values():
        e["ratio"] = e["images_per_s"] / base["images_per_s"] if base else None
    if not engines:
        return res
    pool = engines if dev.type == "cuda" else ({k: v for k, v in engines.items() if v["config"]["precision"] == "fp32"}
                                               or engines)  # the CPU headline: the baseline's precision
    head = max(pool, key=lambda k: pool[k]["images_per_s"])
    res["engine"] = {**engines[head], "variant": head}
    res["ratio"] = engines[head]["images_per_s"] / base["images_per_s"] if base else None
    best = st.chosen or head
    if rec and st.runs.get(f"preset:{best}"):
        res["preset"] = {**_summary(st.runs[f"preset:{best}"]), "variant": best, "recipe": rec[0]}
    single = res.get("preset", engines[best])["images_per_s"]
    fused = {}
    for g in sizes:
        if st.runs.get(f"fused{g}:{best}"):
            f = _summary(st.runs[f"fused{g}:{best}"])
            fused[str(g)] = {**f, "models": g, "variant": best, "recipe": rec[0] if rec else "plain SGD",
                             "speedup_vs_sequential": f["images_per_s"] / single}
    if fused:
        res["fused_sizes"] = {"1": {"images_per_s": single, "models": 1, "variant": best,
                                    "peak_memory_mib": res.get("preset", engines[best]).get("peak_memory_mib")},
                              **fused}
        res["fused"] = next(iter(fused.values()))
    return res


def format_report(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"machine: {m['cpu']} ({m['arch']}, {m['cores']} cores, {m['torch_threads']} torch threads), "
        f"torch {m['torch']}, GPU: {m['gpu'] or 'none'}; load average {m.get('load_average')} at the start, "
        f"{m.get('load_average_end')} at the end",
        f"batch {res['settings']['batch_size']}, {res['settings']['warmup_steps']} warm-up + "
        f"{res['settings']['timed_steps']} timed steps, {res['settings']['repeats']} interleaved repeat(s), "
        f"baseline DataLoader workers: {res['settings']['num_workers']} (augmenting inside its window); images/s of "
        f"the median step (in brackets: window mean / best step), per-step "
        f"{'CUDA events' if m.get('gpu') else 'perf_counter'}",
        "",
        "| arch | baseline images/s | engine variant | engine images/s | engine / baseline | peak MiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["results"]:
        b = r.get("baseline")
        btxt = "failed" if b is None else (f"{b['images_per_s']:.1f} ({b.get('images_per_s_mean', 0):.1f} / "
                                           f"{b.get('images_per_s_best', 0):.1f})")
        for name, e in r.get("engine_variants", {}).items():
            mark = " (headline)" if name == r.get("engine", {}).get("variant") else ""
            graph = " [graph]" if e["config"].get("engine", {}).get("cuda_graph") else ""
            lines.append(f"| {r['arch']} | {btxt} | {name}{mark}{graph} | {e['images_per_s']:.1f} "
                         f"({e.get('images_per_s_mean', 0):.1f} / {e.get('images_per_s_best', 0):.1f}) | "
                         f"{_ratio(e.get('ratio'))} | {_mib(e)} |")
        if "preset" in r:
            p = r["preset"]
            lines.append(f"| {r['arch']} | | preset recipe {p['recipe']} ({p['variant']}) | {p['images_per_s']:.1f} | | "
                         f"{_mib(p)} |")
        for g, f in r.get("fused_sizes", {}).items():
            if g != "1":
                lines.append(f"| {r['arch']} | | {f['models']} fused ({f['variant']}, {f['recipe']}) | "
                             f"{f['images_per_s']:.1f} model-images/s | {f['speedup_vs_sequential']:.2f}x vs. "
                             f"{f['models']} sequential runs | {_mib(f)} |")
        if "fused" in r and "fused_sizes" not in r:
            f = r["fused"]
            lines.append(f"| {r['arch']} | | {f['models']} fused ({f['variant']}) | {f['images_per_s']:.1f} model-images/s | "
                         f"{f['speedup_vs_sequential']:.2f}x vs. {f['models']} sequential runs | |")
        for name, why in r.get("errors", {}).items():
            lines.append(f"| {r['arch']} | | {name} | failed: {why} | | |")
    lines.append("")
    for r in res["results"]:
        for name, a in (r.get("anatomies") or {}).items():
            lines.append(f"{r['arch']} anatomy ({name}, {a['profiled_steps']} profiled steps): "
                         f"{a['kernels_per_step']:.0f} kernels per step, host {a['host_ms_per_step']:.2f} ms per step, "
                         f"GPU busy {a['gpu_busy_ms_per_step']:.2f} ms per step")
    lines += [f"{r['arch']}: engine / baseline = {r['ratio']:.2f}x" for r in res["results"] if r.get("ratio")]
    return "\n".join(lines)


def _ratio(r: float | None) -> str:
    return "" if r is None else f"{r:.2f}x"


def _mib(fig: dict) -> str:
    return "" if not fig.get("peak_memory_mib") else f"{fig['peak_memory_mib']:,.0f}"


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

    A grid of R runs of S steps at batch B processes ``R * S * B`` training images. Each grid is priced
    at the best measured figure for how it trains, and the row names it (``variant``):

    * a single run: the headline (fastest) engine variant of its architecture, with the preset's
      recipe when the figures time it (``preset``);
    * a fused grid of G members per seed (``teachers[].fuse``): the fused figure measured at the group
      size nearest G (``fused_sizes``, model-images/s), else the single rate times the one fused
      speed-up the figures hold (``fused``), else the single rate (said so: fused not measured);
    * students: the distillation figures (``distillation``: student-images/s of the hard teacher's
      family trained separately, in lockstep and fused, each with its teacher's forward) for the
      distilled students, the fused group rate for fused baselines (``distillation[].fuse_students``);
      without distillation figures, the single student rate plus a third of a teacher training step
      per teacher forward (forward : backward ~ 1 : 2), one forward per step of each lockstep job.

    Each job's warm-up (``jobs``: the time to the first step of a measured teacher and student job,
    benchmarks/gpu_jobs.py) is added once per job: per seed for a fused grid, per run otherwise.
    Student baselines that are a teacher's training run (:func:`lspipe.experiments.distill.teacher_twins`)
    are trained once, as teachers. Validation, dumps and evaluation are left out (a few % on CIFAR).
    The config is read as written, not validated: keys left out take the schema's defaults.

    An architecture the figures do not measure is projected from its FLOP count when the figures hold
    ``sustained_tflops`` (training FLOP/s one GPU sustains, 1e12; assumed or measured): its rate is
    ``sustained_tflops * 1e12 / flops_per_image(arch, image_size)["train"]`` images/s per GPU at the
    grid's dataset's ``image_size``. Rates are per GPU, so ``hours`` are GPU-hours; a model trained on
    N GPUs (``resources.gpus_per_model``, ``teachers[].gpus_per_model``) takes ``hours / N`` of wall
    time (``wall_hours_per_run``: DDP assumed to scale linearly; auto counts as one GPU).
    """
    rates = _Rates(cfg, figures)
    rows = [_teacher_row(cfg, defaults.fill("teachers[]", g), rates) for g in cfg["teachers"]]
    rows += [_student_row(cfg, defaults.fill("distillation[]", d), rates)
             for d in cfg.get("distillation", defaults.default("distillation"))]
    known = [r["hours"] for r in rows if r["hours"] is not None]
    return {"device": figures["machine"]["gpu"] or figures["machine"]["cpu"], "rows": rows,
            "rates": {a: r["engine"]["images_per_s"] for a, r in rates.res.items() if "engine" in r},
            "sustained_tflops": rates.tflops, "flop_rates": list(rates.flop_rates.values()),
            "warmup_s": rates.warmup, "measured_batch_size": figures.get("settings", {}).get("batch_size"),
            "total_hours": sum(known) if len(known) == len(rows) else None,
            "total_wall_hours": (sum(r["wall_hours_per_run"] * r["runs"] for r in rows)
                                 if len(known) == len(rows) else None),
            "missing_archs": sorted({r["arch"] for r in rows if r["hours"] is None})}


class _Rates:
    """The rates of :func:`project`: measured (single, fused by group size, distillation), from FLOPs,
    and each job's warm-up."""

    def __init__(self, cfg: dict, figures: dict):
        self.cfg, self.res = cfg, {r["arch"]: r for r in figures["results"]}
        self.tflops, self.flop_rates = figures.get("sustained_tflops"), {}
        self.distill = figures.get("distillation") or {}
        jobs = figures.get("jobs") or {}
        self.warmup = {k: jobs[k]["first_step_s"] for k in ("teacher", "student")
                       if isinstance(jobs.get(k), dict) and jobs[k].get("first_step_s") is not None}
        self.gpus_default = cfg.get("resources", {}).get("gpus_per_model",
                                                         defaults.default("resources.gpus_per_model"))

    def dataset(self, name: str) -> dict:
        return defaults.fill("datasets.*", self.cfg["datasets"][name])

    def recipe(self, name: str) -> dict:  # this config is not validated: keys left out take the schema's defaults
        return defaults.fill("recipes.*", self.cfg["recipes"][name])

    def single(self, arch: str, ds_name: str | None = None) -> tuple[float | None, str]:
        """(images/s, what priced it) of one model of ``arch``."""
        r = self.res.get(arch)
        if r and "engine" in r:
            if r.get("preset"):
                return r["preset"]["images_per_s"], f"{r['preset']['variant']} (preset recipe)"
            return r["engine"]["images_per_s"], r["engine"].get("variant") or "engine"
        if not self.tflops or ds_name is None:
            return None, "not measured"
        ds = self.dataset(ds_name)
        key = (arch, ds["image_size"])
        if key not in self.flop_rates:
            fl = flops_per_image(arch, ds["image_size"], _num_classes(ds), ds["channels"])
            self.flop_rates[key] = {"arch": arch, "image_size": ds["image_size"], "train_gflops": fl["train"] / 1e9,
                                    "forward_gflops": fl["forward"] / 1e9,
                                    "images_per_s": self.tflops * 1e12 / fl["train"]}
        return self.flop_rates[key]["images_per_s"], "flops"

    def group(self, arch: str, members: int, ds_name: str | None = None) -> tuple[float | None, str]:
        """(model-images/s, what priced it) of ``members`` models of ``arch`` trained fused."""
        rate, how = self.single(arch, ds_name)
        r = self.res.get(arch, {})
        sizes = {int(k): v for k, v in (r.get("fused_sizes") or {}).items() if int(k) > 1}
        if members > 1 and sizes:
            near = min(sizes, key=lambda s: (abs(math.log(s / members)), -s))
            f = sizes[near]
            return f["images_per_s"], f"{f.get('variant', '')} fused x{near}".strip()
        if members > 1 and r.get("fused") and rate is not None:
            f = r["fused"]
            return rate * f["speedup_vs_sequential"], f"{f.get('variant') or how} fused x{f.get('models', '?')}"
        if members > 1 and rate is not None:
            return rate, f"{how} (fused not measured: priced unfused)"
        return rate, how

    def distilled(self, d: dict, mode: str) -> float | None:
        """Student-images/s of the distillation figures in ``mode`` (teacher forward included), when they
        measure this teacher and student."""
        dd = self.distill
        if (dd.get("teacher_arch"), dd.get("student_arch")) != (d["teacher_arch"], d["student_arch"]):
            return None
        return (dd.get("modes", {}).get(mode) or {}).get("images_per_s")

    def gpus(self, value) -> int:
        return value if isinstance(value, int) and value >= 1 else 1


def _teacher_row(cfg: dict, g: dict, rates: _Rates) -> dict:
    rec = rates.recipe(g["recipe"])
    per_seed = len(g["alphas"]) + len(g["objectives"])
    runs = per_seed * len(g["seeds"])
    images = runs * rec["steps"] * rec["batch_size"]
    fused = bool(g["fuse"]) and per_seed > 1
    rate, how = rates.group(g["arch"], per_seed, g["dataset"]) if fused else rates.single(g["arch"], g["dataset"])
    jobs = len(g["seeds"]) if fused else runs
    warm = jobs * rates.warmup.get("teacher", 0.0)
    sec = None if rate is None else images / rate + warm
    gpus = rates.gpus(rates.gpus_default if g.get("gpus_per_model") is None else g["gpus_per_model"])
    return {"grid": f"teachers {g['dataset']}/{g['arch']}", "arch": g["arch"], "runs": runs, "jobs": jobs,
            "steps": rec["steps"], "batch_size": rec["batch_size"], "images": images, "fused": bool(g["fuse"]),
            "variant": how, "warmup_s": warm, "hours": None if sec is None else sec / 3600, "gpus_per_model": gpus,
            "wall_hours_per_run": None if sec is None else sec / 3600 / runs / gpus,
            "rate_source": None if rate is None else ("flops" if how == "flops" else "measured")}


def _student_row(cfg: dict, d: dict, rates: _Rates) -> dict:
    rec = rates.recipe(d["student_recipe"])
    twins = teacher_twins(d, cfg["teachers"], cfg["recipes"])  # trained once, as teachers (above)
    runs = [r for r in student_runs(d) if r.name not in twins]
    groups = lockstep_groups(d, twins)
    in_group = {name for g in groups for name in g["runs"]}
    n_kd = sum(r.distilled for r in runs)
    # one teacher forward per step of each lockstep job, not one per student
    n_forwards = n_kd - sum(len(g["runs"]) - 1 for g in groups if g["family"] == "kd_hard")
    per_run = rec["steps"] * rec["batch_size"]
    fuse = bool(d.get("fuse_students")) and bool(d["lockstep"])
    mode = "fused" if fuse else "lockstep"
    sec, hows = 0.0, []
    kd_group_rate, kd_single_rate = rates.distilled(d, mode), rates.distilled(d, "separate")
    single, how = rates.single(d["student_arch"], d["dataset"])
    teacher, _ = rates.single(d["teacher_arch"], d["dataset"])
    for g in groups:
        n = len(g["runs"])
        if g["family"] == "kd_hard" and kd_group_rate:
            sec += n * per_run / kd_group_rate
            hows.append(f"{mode} distillation x{n}")
        elif g["family"] == "kd_hard":  # no distillation figures: the student rate plus one teacher forward
            sec = None if single is None or teacher is None or sec is None else sec + n * per_run / single + \
                per_run / teacher / 3
            hows.append(f"{how} + teacher forward")
        else:
            rate, ghow = rates.group(d["student_arch"], n, d["dataset"]) if fuse else (single, how)
            sec = None if rate is None or sec is None else sec + n * per_run / rate
            hows.append(ghow + (f" x{n}" if not fuse else ""))
    rest = [r for r in runs if r.name not in in_group]
    for r in rest:
        if r.distilled and kd_single_rate:
            rate = kd_single_rate
        elif r.distilled:
            rate = None if single is None or teacher is None else 1.0 / (1.0 / single + 1.0 / teacher / 3)
        else:
            rate = single
        sec = None if rate is None or sec is None else sec + per_run / rate
    if rest:
        hows.append(("separate distillation" if kd_single_rate else how) + f" ({len(rest)} single runs)")
    jobs = len(groups) + len(rest)
    warm = jobs * rates.warmup.get("student", 0.0)
    sec = None if sec is None else sec + warm
    gpus = rates.gpus(rates.gpus_default)
    return {"grid": f"students {d['dataset']}/{d['student_arch']} (teacher {d['teacher_arch']})",
            "arch": d["student_arch"], "runs": len(runs), "jobs": jobs, "distilled_runs": n_kd,
            "teacher_forward_runs": n_forwards, "lockstep": bool(d["lockstep"]), "steps": rec["steps"],
            "batch_size": rec["batch_size"], "images": len(runs) * per_run, "fused": fuse,
            "variant": "; ".join(dict.fromkeys(hows)), "warmup_s": warm,
            "hours": None if sec is None else sec / 3600, "gpus_per_model": gpus,
            "wall_hours_per_run": None if sec is None else sec / 3600 / max(len(runs), 1) / gpus,
            "rate_source": None if sec is None else ("flops" if how == "flops" else "measured")}


def format_projection(pr: dict) -> str:
    rates = ", ".join(f"{a} {v:,.0f}" for a, v in pr["rates"].items())
    lines = [f"projected sequential training time on {pr['device']}"
             + (f" (best engine images/s on 3x32x32 images at batch {pr['measured_batch_size']}: {rates})" if rates else "")
             + (f"; warm-up per job: {', '.join(f'{k} {v:.1f} s' for k, v in pr['warmup_s'].items())}"
                if pr.get("warmup_s") else "; job warm-up not measured (not included)") + ":"]
    for f in pr.get("flop_rates", []):
        lines.append(f"  {f['arch']} at {f['image_size']} px: {f['forward_gflops']:.2f} GFLOP forward, "
                     f"{f['train_gflops']:.2f} GFLOP per training image (torch.utils.flop_counter) at "
                     f"{pr['sustained_tflops']:g} TFLOP/s sustained per GPU -> {f['images_per_s']:,.0f} images/s per GPU")
    lines += ["", "| grid | runs (jobs) | steps x batch | images | priced at | GPU-hours | GPUs per model | "
                  "wall hours per run |", "|---|---|---|---|---|---|---|---|"]
    for r in pr["rows"]:
        h = "not measured" if r["hours"] is None else f"{r['hours']:,.2f}"
        w = "" if r.get("wall_hours_per_run") is None else f"{r['wall_hours_per_run']:,.3f}"
        src = " (from FLOPs)" if r.get("rate_source") == "flops" else ""
        lines.append(f"| {r['grid']}{' (fused)' if r['fused'] else ''} | {r['runs']} ({r.get('jobs', '')}) | "
                     f"{r['steps']} x {r['batch_size']} | {r['images']:.3g} | {r.get('variant', '')} | {h}{src} | "
                     f"{r['gpus_per_model']} | {w} |")
    total = "n/a (archs not measured: " + ", ".join(pr["missing_archs"]) + ")" if pr["total_hours"] is None \
        else (f"{pr['total_hours']:,.2f} GPU-hours ({pr['total_hours'] * 60:,.1f} min, {pr['total_hours'] / 24:,.2f} "
              f"days); one model after another, each on its GPUs: {pr['total_wall_hours']:,.2f} h")
    lines.append(f"\ntotal: {total}")
    return "\n".join(lines)


def cmd_bench(a):
    if a.threads and not a.figures:  # a projection from earlier figures needs no torch
        import torch

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
        res = run_benchmark(archs, batch_size=bs, warmup=warmup, steps=steps, workers=workers, device=a.device,
                            repeats=a.repeats, compile_=a.compile, compile_mode=a.compile_mode, cpu_bf16=a.cpu_bf16,
                            fuse=a.fuse, variants=a.variants, presets=a.preset_recipes, anatomy=a.anatomy,
                            out_path=a.out, log=log)
        res["settings"]["smoke"] = bool(a.smoke)
    if a.distill or a.distill_only:
        tarch, sarch = a.distill_archs or (["resnet8", "smallcnn"] if a.smoke else ["resnet56", "alexnet"])
        dres = run_distillation_benchmark(tarch, sarch, a.temperatures or ((1, 2) if a.smoke else PAPER_TEMPERATURES),
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


def merge_figures(paths) -> dict:
    """Earlier figures (``--figures``), one file or several: the first with engine results gives the
    results and the machine; ``distillation``, ``jobs`` and ``sustained_tflops`` come from whichever file
    holds them (bench.json, bench-distill.json, jobs.json of one GPU check)."""
    import json

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
