"""Running a model: the device, torch's threads, batched float32 inference, accuracy and NLL of logits.

:func:`predict` always runs in plain float32 (:func:`full_float32`: no bf16 autocast, no TF32),
whatever precision training used: the per-epoch validation metrics and the activation dumps (which
feed ECE, temperature scaling, gamma and the projections) go through it.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lspipe.base.errors import ConfigError


def setup_torch(threads: int | None) -> None:
    """Use ``threads`` torch threads (None or 0: torch's default)."""
    if threads:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def full_float32(device_type: str = "cpu"):
    """Plain float32 arithmetic inside the block: no autocast, and no TF32 in CUDA matmuls and
    convolutions (PyTorch allows TF32 in cuDNN convolutions by default); restores the flags."""
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@torch.no_grad()
def predict(
    model: nn.Module, x: np.ndarray | torch.Tensor, device: torch.device | str, batch_size: int = 1000,
    features: bool = False,
):
    """Logits (and penultimate features) for ``x`` in eval mode, batched, as float32 CPU tensors.

    Always in float32 on every device (:func:`full_float32`: no bf16 autocast, no TF32), whatever
    precision training used: the dumps feed ECE, temperature scaling, gamma and the projections,
    and the per-epoch validation metrics use the same path.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    xt = torch.as_tensor(x)
    outs, feats = [], []
    for s in range(0, len(xt), batch_size):
        xb = xt[s : s + batch_size].to(device, non_blocking=True)
        with full_float32(device.type):
            out = model(xb, features=True) if features else model(xb)
        if features:
            outs.append(out[0].float().cpu())
            feats.append(out[1].float().cpu())
        else:
            outs.append(out.float().cpu())
    model.train(was_training)
    logits = torch.cat(outs) if outs else torch.empty(0)
    return (logits, torch.cat(feats)) if features else logits


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor | np.ndarray) -> dict:
    labels = torch.as_tensor(labels)
    return {
        "accuracy": float((logits.argmax(1) == labels).float().mean()),
        "nll": float(F.cross_entropy(logits, labels)),
        "n": int(len(labels)),
    }


def resolve_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"device {spec!r} is not a device (config key 'device'): use 'auto', 'cpu', 'cuda' or "
                          "'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} requested (config key 'device') but CUDA is not available on this "
                          "machine; set device: auto (or cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {spec!r} requested (config key 'device') but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s); set device: auto (or cuda:0)")
    return dev
