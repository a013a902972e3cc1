"""Compare a model's float32 activation dump with an independent float32 forward of its weights.

    python benchmarks/dump_check.py --data D.npz --model model.pt --dump dump.h5 --out check.json

The dump (``lspipe dump``) is written by the workflow's code path on the training device; here the
same ``model.pt`` is rebuilt on the CPU and run in plain float32 (no autocast, a fresh model, no
channels_last, no compile) on the dump's test examples. The logits must agree within ``--rtol`` of
their scale and every prediction must match; otherwise the script exits 1 naming the difference.
A bf16-autocast forward of the same weights is reported beside it, to show the tolerance would
catch bf16-rounded logits leaking into a dump.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from lspipe.core import data as data_mod
from lspipe.engine.dumpfile import Dump
from lspipe.core.models import load_model


def _recipe_flags(meta: dict) -> dict | None:
    rec = meta.get("recipe")
    if isinstance(rec, str):
        try:
            rec = json.loads(rec)
        except ValueError:
            return None
    keys = ("precision", "channels_last", "cuda_graph", "compile", "cpu_amp", "cpu_channels_last", "amp")
    return {k: rec.get(k) for k in keys} if isinstance(rec, dict) else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--rtol", type=float, default=1e-3,
                    help="max |difference| / max |logit| allowed (cuDNN float32 vs. CPU float32: ~1e-5; bf16: ~1e-2)")
    a = ap.parse_args(argv)

    prepared = data_mod.load(a.data)
    dump = Dump(a.dump).split(a.split)
    x = torch.as_tensor(prepared.x[a.split][dump.index])
    if not np.array_equal(prepared.y[a.split][dump.index], dump.labels):
        print(f"FAIL: the dump's {a.split} labels do not match {a.data} at its indices", file=sys.stderr)
        return 1
    model, meta = load_model(a.model, "cpu")
    model = model.float().eval()
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        ref = model(x).numpy()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model(x).float().numpy()
    scale = float(np.abs(ref).max()) or 1.0
    diff = float(np.abs(dump.logits - ref).max())
    bf16_diff = float(np.abs(bf16 - ref).max())
    agree = float((dump.logits.argmax(1) == ref.argmax(1)).mean())
    res = {"model": a.model, "dump": a.dump, "split": a.split, "examples": int(len(x)),
           "dump_dtype": str(dump.logits.dtype), "max_abs_logit": scale,
           "max_abs_diff_dump_vs_fp32": diff, "relative_diff": diff / scale, "rtol": a.rtol,
           "prediction_agreement": agree, "bf16_max_abs_diff_vs_fp32": bf16_diff,
           "bf16_relative_diff": bf16_diff / scale, "bf16_detectable": bf16_diff / scale > a.rtol,
           "trained_with": _recipe_flags(meta), "engine": meta.get("engine")}
    res["ok"] = bool(dump.logits.dtype == np.float32 and diff / scale <= a.rtol and agree == 1.0)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res, indent=2))
    if not res["ok"]:
        print(f"FAIL: the float32 dump {a.dump} differs from a float32 forward of {a.model}: max |diff| "
              f"{diff:.3g} ({diff / scale:.3g} of the logit scale, allowed {a.rtol:g}), predictions agree "
              f"on {agree:.1%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
