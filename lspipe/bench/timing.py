"""``lspipe bench``'s measurements: training throughput of lspipe's engine against a conventional PyTorch
loop, fused groups, the distillation case (the hard-target teacher's temperature family trained separately,
in lockstep and fused), in this process; what each figure means is :mod:`lspipe.bench`'s docstring."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch.profiler as tp
import torchvision
import torchvision.transforms as T
from PIL import Image
from torch.autograd import DeviceType

from lspipe.base import defaults
from lspipe.base.io import write_json
from lspipe.bench.settings import DISTILL_MODES, PAPER_TEMPERATURES, engine_variants, preset_recipes
from lspipe.core import models
from lspipe.core.data import Prepared
from lspipe.core.inference import resolve_device
from lspipe.core.losses import Objective
from lspipe.core.recipe import Recipe
from lspipe.engine.step import GRAPH_COMPARE, GRAPH_WARMUP
from lspipe.engine.training import train_group

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
NUM_CLASSES = 10
SGD = {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}


# --------------------------------------------------------------------------- machine


def machine_info(device: torch.device) -> dict:
    """CPU model, cores, library versions and the GPU (if any) of this run."""
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
    info["torchvision"] = torchvision.__version__
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]  # other jobs share the machine?
    except OSError:  # pragma: no cover - not on every platform
        info["load_average"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- data


def random_cifar(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random uint8 images (N x 3 x 32 x 32) and labels in 0..9."""
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
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# --------------------------------------------------------------------------- timing


class StepClock:
    """Per-step times: a CUDA event recorded after each step on CUDA (the GPU's own timeline, idle gaps
    included), ``time.perf_counter`` on the CPU (steps are synchronous there). :meth:`mark` after each
    step; :meth:`step_seconds` the times between consecutive marks."""

    def __init__(self, device: torch.device):
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
    kernels = [e for e in prof.events() if getattr(e, "device_type", None) == DeviceType.CUDA]
    busy = sum(e.time_range.elapsed_us() for e in kernels) / 1000.0  # us -> ms
    return {"kernels_per_step": len(kernels) / steps, "gpu_busy_ms_per_step": busy / steps,
            "host_ms_per_step": 1000.0 * host_s / steps, "profiled_steps": steps}


def _engine_data(x: np.ndarray, y: np.ndarray):
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
    return GRAPH_WARMUP + GRAPH_COMPARE if device.type == "cuda" and overrides.get("cuda_graph") is not False else 0


def time_engine(arch: str, x: np.ndarray, y: np.ndarray, *, batch_size: int, warmup: int, steps: int,
                device: torch.device, recipe_overrides: dict, fuse: int = 0, seed: int = 0,
                objective: dict | None = None, profile: bool = False) -> dict:
    """images/s of :func:`lspipe.engine.training.train_group` (``fuse`` > 1: that many models trained fused;
    model-images/s), its peak GPU memory, the engine's settings and, with ``profile``, its anatomy."""
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
    reps = -(-n // len(y))
    return (np.concatenate([x] * reps)[:n], np.concatenate([y] * reps)[:n]) if reps > 1 else (x[:n], y[:n])




# --------------------------------------------------------------------------- the distillation case


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
    if mode not in DISTILL_MODES:
        raise ValueError(f"mode must be one of {DISTILL_MODES}, got {mode!r}")
    warmup += _graph_warmup(recipe_overrides or {}, device)
    data = _engine_data(*_cycle(x, y, batch_size * (warmup + steps)))
    recipe = Recipe.from_dict({
        "steps": warmup + steps, "batch_size": batch_size, **SGD, "augment": {"pad": 4, "flip": True},
        "eval_batch_size": 256, **(recipe_overrides or {}),
    })
    torch.manual_seed(seed + 100)
    teacher = models.build_model(teacher_arch, data).to(device).eval()
    timer = _StepTimer(warmup, steps, device)
    temps = [float(t) for t in temperatures]
    with tempfile.TemporaryDirectory(prefix="lspipe-bench-") as tmp:
        group = temps[-1:] if mode == "separate" else temps
        objective = Objective([{"kind": "kd", "teacher": "teacher", "T": t} for t in group], {"teacher": teacher})
        _, summary = train_group(student_arch, data, recipe, objective, seed=seed, fuse=mode == "fused", device=device,
                                 checkpoint_path=Path(tmp) / "ckpt",
                                 metrics_paths=[Path(tmp) / f"m{i}.csv" for i in range(len(group))],
                                 progress=False, callbacks=[timer])
    students = 1 if mode == "separate" else len(temps)
    return _figures(timer.clock.step_seconds(), batch_size, students, timer.clock.cuda) | {
        "mode": mode, "students_per_step": students, "engine": summary["engine"]}


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



# --------------------------------------------------------------------------- the benchmark


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

