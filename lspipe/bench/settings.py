"""What ``lspipe bench`` measures: the engine's variants per device, a preset's recipes, the distillation
case's temperatures and modes. Torch-free: the command's options name them."""

from __future__ import annotations

from pathlib import Path

import yaml

PAPER_TEMPERATURES = (1.0, 2.0, 3.0, 4.0, 8.0, 12.0, 16.0)
DISTILL_MODES = ("separate", "lockstep", "fused")

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


def engine_variants(device, compile_: bool, compile_mode: str | None, cpu_bf16: bool,
                    names: list[str] | None = None) -> dict[str, dict]:
    """Name -> recipe overrides of each engine configuration measured on ``device`` (a ``torch.device``;
    ``names``: a subset)."""
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
    recipes = yaml.safe_load(Path(path).read_text())["recipes"]
    drop = ("steps", "lr_milestones", "checkpoint_every", "eval_batch_size", "batch_size", "amp", "precision",
            "channels_last", "cuda_graph", "compile", "compile_mode", "cpu_amp", "cpu_channels_last")
    out = {}
    for arch in archs:
        name = arch if arch in recipes else ("resnet56" if arch.startswith("resnet") and "resnet56" in recipes else None)
        if name:
            out[arch] = (name, {k: v for k, v in recipes[name].items() if k not in drop})
    return out
