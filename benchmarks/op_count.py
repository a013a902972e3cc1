"""Operations dispatched by one training step: lspipe's engine against the textbook loop, on the CPU.

    python benchmarks/op_count.py [--archs resnet56 alexnet] [--members 1 7] [--preset workflow/presets/paper.yaml]
                                  [--batch-size 2] [--out counts.json]

On a GPU the step time of these small models follows the number of operations the host dispatches
(22-33 us each on an H100 host), not their arithmetic (docs/benchmarks.md, issue 28), so the count is
the budget that CI can check without a GPU. A ``TorchDispatchMode`` counts every ATen operation that
reaches the dispatcher during one steady-state training step, views excluded (they launch nothing);
casts (``_to_copy``, ``copy_`` and ``_foreach_copy_`` between dtypes) are also reported apart.

* **plain**: the textbook loop: ``model.classifier(model.body(x))`` on normalised float inputs (the
  DataLoader's workers did the rest), ``F.cross_entropy``, ``zero_grad``, ``backward``, ``SGD.step``
  (``foreach``, as PyTorch picks on CUDA); fp32, and bf16 autocast + channels_last (the textbook AMP).
* **engine**: one step of :func:`lspipe.engine.training.train_group` with the preset's own recipe
  (``--preset``: its ``recipes.<arch>``, clipping and loss scale included) in the settings the engine
  uses on a GPU (:func:`lspipe.engine.step.resolve_engine` for CUDA: precision, channels_last, fused
  SGD, whole-epoch augmentation, bf16 weights cast once per step), run on the CPU: bf16 autocast is
  the CPU's, whose lists differ from CUDA's in a few operations (pooling, ``pow``) that the engine's
  steps do not use. The count is the difference between ``train_group`` runs of k+1 and k steps
  inside one epoch: everything the loop does per batch (the batch, the learning rate, the step,
  metrics), nothing it does once. The captured CUDA graph replays these same operations.

The count does not depend on the batch size (``--batch-size``, 2 by default, keeps it cheap). Code
from before the engine took its settings apart (no ``engine`` argument) is counted with the recipe's
CPU switches in bf16 + channels_last and ``foreach`` SGD, as the first count was (issue 28).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import inspect
import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lspipe.bench import timing as bench  # noqa: E402
from lspipe.core import models  # noqa: E402
from lspipe.core.losses import Objective  # noqa: E402
from lspipe.core.recipe import Recipe  # noqa: E402
from lspipe.engine import training  # noqa: E402

PRESET = REPO / "workflow" / "presets" / "paper.yaml"
CAST_OPS = ("_to_copy", "copy_", "_foreach_copy_")


class OpCounter(TorchDispatchMode):
    """Counts the operations dispatched inside it (views excluded) by name; casts apart."""

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter = collections.Counter()
        self.casts = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not func.is_view:
            name = func.overloadpacket.__name__
            self.ops[name] += 1
            if name in CAST_OPS and _casts(name, args, kwargs, out):
                self.casts += 1
        return out

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def _dtypes(x) -> set:
    if isinstance(x, torch.Tensor):
        return {x.dtype}
    if isinstance(x, (list, tuple)):
        return set().union(*(_dtypes(t) for t in x)) if x else set()
    return set()


def _casts(name: str, args, kwargs, out) -> bool:
    if name == "_to_copy":
        return kwargs.get("dtype") is not None and kwargs["dtype"] != args[0].dtype
    return len(_dtypes(args[0]) | _dtypes(args[1])) > 1  # copy_(dst, src) / _foreach_copy_(dsts, srcs)


def preset_recipe(arch: str, preset: Path = PRESET) -> dict:
    """The preset's recipe of ``arch`` (``recipes.<arch>``; ResNets take ``resnet56``'s)."""
    recipes = yaml.safe_load(Path(preset).read_text())["recipes"]
    name = arch if arch in recipes else ("resnet56" if arch.startswith("resnet") else next(iter(recipes)))
    return dict(recipes[name])


def _count_recipe(recipe: dict, steps: int, batch_size: int) -> dict:
    keep = {k: v for k, v in recipe.items() if k not in ("steps", "lr_milestones", "amp", "compile", "compile_mode",
                                                           "checkpoint_every", "eval_batch_size", "batch_size")}
    # a small learning rate: random images and labels at batch 2 would diverge (the count does not depend on it)
    return {**keep, "steps": steps, "batch_size": batch_size, "eval_batch_size": 64, "lr": 1e-3}


def _new_engine() -> bool:
    return "engine" in inspect.signature(training.train_group).parameters


def _gpu_engine(recipe: Recipe, arch: str):
    """The engine's CUDA settings for ``arch``, run on the CPU (no graph: it replays the same operations)."""
    from lspipe.engine.step import resolve_engine

    return dataclasses.replace(resolve_engine(recipe, "cuda", arch), device_type="cpu", cuda_graph="off")


def _fit_count(arch: str, members: int, recipe: dict, steps: int, batch_size: int) -> OpCounter:
    x, y = bench.random_cifar(batch_size * (steps + 4), 0)
    data = bench._engine_data(x, y)
    rec = Recipe.from_dict(_count_recipe(recipe, steps, batch_size)) if _new_engine() else None
    counter = OpCounter()
    with tempfile.TemporaryDirectory(prefix="lspipe-ops-") as tmp:
        kwargs = dict(seed=0, fuse=members > 1, device="cpu", checkpoint_path=Path(tmp) / "ckpt",
                      metrics_paths=[Path(tmp) / f"m{i}.csv" for i in range(members)], progress=False)
        objective = Objective([{"kind": "ls", "alpha": 0.1}] * members)
        if rec is not None:
            with counter:
                training.train_group(arch, data, rec, objective, engine=_gpu_engine(rec, arch), **kwargs)
        else:  # the code before issue 28: the CPU switches, foreach SGD as on CUDA
            old = {k: v for k, v in _count_recipe(recipe, steps, batch_size).items()
                   if k not in ("precision", "cuda_graph", "channels_last")}
            rec = Recipe.from_dict({**old, "cpu_amp": True, "cpu_channels_last": True})
            sgd = torch.optim.SGD.__init__

            def foreach_sgd(self, *a, **k):
                sgd(self, *a, **{**k, "foreach": True})

            torch.optim.SGD.__init__ = foreach_sgd
            try:
                with counter:
                    training.train_group(arch, data, rec, objective, **kwargs)
            finally:
                torch.optim.SGD.__init__ = sgd
    return counter


def engine_step(arch: str, members: int, recipe: dict, batch_size: int = 2, steps: int = 2) -> dict:
    """Operations of one steady-state step of ``train_group`` (``steps + 1`` minus ``steps`` steps)."""
    a = _fit_count(arch, members, recipe, steps, batch_size)
    b = _fit_count(arch, members, recipe, steps + 1, batch_size)
    ops = collections.Counter({k: b.ops[k] - a.ops[k] for k in b.ops | a.ops if b.ops[k] != a.ops[k]})
    return {"ops": b.total - a.total, "casts": b.casts - a.casts, "top": ops.most_common(12)}


def plain_step(arch: str, bf16: bool = False, batch_size: int = 2) -> dict:
    """Operations of one step of the textbook loop (the second of two: SGD's buffers exist)."""
    torch.manual_seed(0)
    model = models.create(arch, bench.NUM_CLASSES, 3, 32).train()
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, bench.NUM_CLASSES, (batch_size,))
    if bf16:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), **bench.SGD, foreach=True)
    for _ in range(2):
        counter = OpCounter()
        with counter:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model.classifier(model.body(x)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return {"ops": counter.total, "casts": counter.casts, "top": counter.ops.most_common(12)}


def count(archs=("resnet56", "alexnet"), members=(1, 7), preset: Path = PRESET, batch_size: int = 2, log=print) -> dict:
    """Every count of the table in docs/benchmarks.md: per arch, the plain loop (fp32; bf16 + cl) and the
    engine with the preset's recipe for each group size, with and without its clipping."""
    torch.set_num_threads(1)
    out = {"preset": str(Path(preset).resolve().relative_to(REPO)) if Path(preset).resolve().is_relative_to(REPO)
           else str(preset), "batch_size": batch_size, "torch": torch.__version__, "archs": {}}
    for arch in archs:
        recipe = preset_recipe(arch, preset)
        row = {"recipe": recipe, "plain_fp32": plain_step(arch, False, batch_size),
               "plain_bf16_cl": plain_step(arch, True, batch_size)}
        for g in members:
            row[f"engine_{g}"] = engine_step(arch, g, recipe, batch_size)
            if recipe.get("grad_clip"):
                row[f"engine_{g}_noclip"] = engine_step(arch, g, {**recipe, "grad_clip": None}, batch_size)
        out["archs"][arch] = row
        log(format_row(arch, row))
    return out


def format_row(arch: str, row: dict) -> str:
    plain = row["plain_fp32"]["ops"]
    parts = [f"{arch}: plain fp32 {plain}, plain bf16+cl {row['plain_bf16_cl']['ops']} "
             f"({row['plain_bf16_cl']['casts']} casts)"]
    for k, v in row.items():
        if k.startswith("engine_"):
            parts.append(f"{k} {v['ops']} ({v['casts']} casts, {v['ops'] / plain:.2f}x plain)")
    return "; ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["resnet56", "alexnet"])
    p.add_argument("--members", nargs="+", type=int, default=[1, 7])
    p.add_argument("--preset", default=str(PRESET), help="the preset whose recipes are counted")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--out", default=None, help="write the counts as JSON")
    a = p.parse_args(argv)
    res = count(a.archs, a.members, Path(a.preset), a.batch_size)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
