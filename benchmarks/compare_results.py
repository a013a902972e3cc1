"""Compare two results folders file by file: did a change of the code change any number?

    python benchmarks/compare_results.py A B [--ignore-key KEY ...] [--show N]

Run the same configuration's whole DAG twice (before and after a change, each into its own
results folder; use the same relative ``results:`` path, e.g. two checkouts each running
``snakemake --cores 2``, so the paths recorded in the files agree), then compare the two folders.
Every file under A is compared with the file of the same relative path under B:

* JSON: the parsed values, exactly (floats bit for bit);
* CSV/TSV: the header, then every cell as text;
* HDF5 (dumps, probe traces): the same groups and datasets, each dataset's dtype, shape and values
  (NaN equal to NaN), and every attribute (attributes holding JSON are compared parsed);
* ``model.pt`` and other ``.pt`` files: every tensor of the state dict (dtype, shape, values) and
  the rest of the file (spec, metadata) as values;
* ``.npz``: every array; PDF: the bytes without the creation date; Markdown: the text, with the
  cells of ignored columns left out; anything else (PNG, reStructuredText, ...): the bytes.

Wall-time values are left out, as they differ from run to run: keys and CSV columns named
``seconds`` or ``train_seconds``, the Markdown column ``train time (s)``, and the file hashes of
models (``sha256``, ``teacher_sha256``: a ``model.pt`` records its training time, so its hash
differs too; a dump's ``integrity``, the hash of its attributes, which hold both). ``logs/``, ``benchmarks/`` and hidden files (completed-run records, the results lock)
are not compared. Files present on one side only are differences.

Exit status 0 when everything compares equal, 1 otherwise; one line per difference (the first
``--show`` of them in detail) and a summary per kind of file.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

WALL_TIME_KEYS = ("seconds", "train_seconds", "sha256", "teacher_sha256", "integrity")
WALL_TIME_MD_COLUMNS = ("train time (s)",)
SKIP_DIRS = ("logs", "benchmarks")


def files(root: Path) -> set[str]:
    out = set()
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts) or rel.parts[0] in SKIP_DIRS:
            continue
        out.add(rel.as_posix())
    return out


# --------------------------------------------------------------------------- values


def same_value(a, b, ignore: tuple[str, ...], where: str, out: list[str]) -> None:
    """Append to ``out`` where the (JSON-like) values ``a`` and ``b`` differ; keys in ``ignore`` are skipped."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k in ignore:
                continue
            if k not in a or k not in b:
                out.append(f"{where}.{k}: only in {'B' if k not in a else 'A'}")
            else:
                same_value(a[k], b[k], ignore, f"{where}.{k}", out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} items vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            same_value(x, y, ignore, f"{where}[{i}]", out)
    elif _is_tensor(a) or _is_tensor(b):
        same_array(a, b, where, out)
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        same_array(a, b, where, out)
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        pass
    elif type(a) is not type(b) or a != b:
        out.append(f"{where}: {a!r} vs {b!r}")


def _is_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def same_array(a, b, where: str, out: list[str]) -> None:
    if _is_tensor(a) or _is_tensor(b):
        if not (_is_tensor(a) and _is_tensor(b)):
            out.append(f"{where}: a tensor on one side only")
            return
        if a.dtype != b.dtype:
            out.append(f"{where}: dtype {a.dtype} vs {b.dtype}")
            return
        a, b = a.detach().cpu().numpy(), b.detach().cpu().numpy()
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        out.append(f"{where}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}")
        return
    equal_nan = a.dtype.kind in "fc"
    if not np.array_equal(a, b, equal_nan=equal_nan):
        if a.dtype.kind in "fc":
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            out.append(f"{where}: {int(np.sum(~(diff == 0)))} of {a.size} values differ (max abs diff {np.nanmax(diff):.3g})")
        else:
            out.append(f"{where}: {int(np.sum(a != b))} of {a.size} values differ")


# --------------------------------------------------------------------------- file kinds


def cmp_json(a: Path, b: Path, ignore, out):
    same_value(json.loads(a.read_text()), json.loads(b.read_text()), ignore, "", out)


def _rows(path: Path):
    text = path.read_text()
    dialect = "excel-tab" if path.suffix == ".tsv" else "excel"
    return list(csv.reader(io.StringIO(text), dialect=dialect))


def cmp_csv(a: Path, b: Path, ignore, out):
    ra, rb = _rows(a), _rows(b)
    if not ra or not rb:
        if ra != rb:
            out.append("one side is empty")
        return
    if ra[0] != rb[0]:
        out.append(f"header {ra[0]} vs {rb[0]}")
        return
    keep = [i for i, name in enumerate(ra[0]) if name not in ignore]
    if len(ra) != len(rb):
        out.append(f"{len(ra) - 1} rows vs {len(rb) - 1}")
    for n, (x, y) in enumerate(zip(ra[1:], rb[1:]), 1):
        for i in keep:
            if (x[i] if i < len(x) else None) != (y[i] if i < len(y) else None):
                out.append(f"row {n}, {ra[0][i]}: {x[i] if i < len(x) else None!r} vs {y[i] if i < len(y) else None!r}")


def _attr(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str) and v[:1] in "{[":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    if isinstance(v, np.ndarray):
        return [_attr(x) for x in v.tolist()] if v.dtype.kind in "OSU" else v
    if isinstance(v, np.generic):
        return v.item()
    return v


def cmp_h5(a: Path, b: Path, ignore, out):
    import h5py

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names = {"A": [], "B": []}
        fa.visit(names["A"].append)
        fb.visit(names["B"].append)
        for side, other in (("A", "B"), ("B", "A")):
            for n in sorted(set(names[side]) - set(names[other])):
                out.append(f"/{n}: only in {side}")
        for n in ["", *sorted(set(names["A"]) & set(names["B"]))]:
            oa, ob = (fa[n], fb[n]) if n else (fa, fb)
            attrs_a = {k: _attr(v) for k, v in oa.attrs.items()}
            attrs_b = {k: _attr(v) for k, v in ob.attrs.items()}
            same_value(attrs_a, attrs_b, ignore, f"/{n}@", out)
            if isinstance(oa, h5py.Dataset) and isinstance(ob, h5py.Dataset):
                if oa.dtype != ob.dtype or oa.shape != ob.shape:
                    out.append(f"/{n}: {oa.dtype}{list(oa.shape)} vs {ob.dtype}{list(ob.shape)}")
                elif oa.dtype.kind == "O":
                    same_value([_attr(x) for x in oa[()].tolist()], [_attr(x) for x in ob[()].tolist()], ignore, f"/{n}", out)
                else:
                    same_array(oa[()], ob[()], f"/{n}", out)


def cmp_pt(a: Path, b: Path, ignore, out):
    import torch

    same_value(torch.load(a, map_location="cpu", weights_only=False),
               torch.load(b, map_location="cpu", weights_only=False), ignore, "", out)


def cmp_npz(a: Path, b: Path, ignore, out):
    with np.load(a, allow_pickle=False) as za, np.load(b, allow_pickle=False) as zb:
        if set(za.files) != set(zb.files):
            out.append(f"arrays {sorted(za.files)} vs {sorted(zb.files)}")
        for k in sorted(set(za.files) & set(zb.files)):
            same_array(za[k], zb[k], k, out)


def cmp_pdf(a: Path, b: Path, ignore, out):
    drop = re.compile(rb"/CreationDate \(D:[^)]*\)")
    if drop.sub(b"", a.read_bytes()) != drop.sub(b"", b.read_bytes()):
        out.append("the files differ (apart from their creation dates)")


def _md_lines(path: Path, columns) -> list[str]:
    lines, skip = [], []
    for line in path.read_text().splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if any(c in columns for c in cells):
                skip = [i for i, c in enumerate(cells) if c in columns]
            line = " | ".join(c for i, c in enumerate(cells) if i not in skip)
        else:
            skip = [] if not line.strip() else skip
        lines.append(line)
    return lines


def cmp_md(a: Path, b: Path, ignore, out):
    la, lb = _md_lines(a, WALL_TIME_MD_COLUMNS), _md_lines(b, WALL_TIME_MD_COLUMNS)
    if len(la) != len(lb):
        out.append(f"{len(la)} lines vs {len(lb)}")
    for n, (x, y) in enumerate(zip(la, lb), 1):
        if x != y:
            out.append(f"line {n}: {x[:120]!r} vs {y[:120]!r}")


def cmp_bytes(a: Path, b: Path, ignore, out):
    if a.read_bytes() != b.read_bytes():
        out.append("the bytes differ")


KINDS = {".json": cmp_json, ".csv": cmp_csv, ".tsv": cmp_csv, ".h5": cmp_h5, ".pt": cmp_pt, ".npz": cmp_npz,
         ".pdf": cmp_pdf, ".md": cmp_md}


def compare(a: Path, b: Path, ignore: tuple[str, ...] = WALL_TIME_KEYS) -> tuple[dict[str, list[str]], Counter]:
    """``{relative path: [differences]}`` of the files that differ (or exist on one side only), and
    the number of files compared per kind."""
    fa, fb = files(a), files(b)
    diffs: dict[str, list[str]] = {}
    for rel in sorted(fa ^ fb):
        diffs[rel] = [f"only in {'A' if rel in fa else 'B'}"]
    counts: Counter = Counter()
    for rel in sorted(fa & fb):
        suffix = Path(rel).suffix
        counts[suffix or "(none)"] += 1
        out: list[str] = []
        try:
            KINDS.get(suffix, cmp_bytes)(a / rel, b / rel, ignore, out)
        except Exception as err:  # an unreadable file is a difference, not a crash
            out.append(f"cannot compare: {type(err).__name__}: {err}")
        if out:
            diffs[rel] = out
    return diffs, counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--ignore-key", nargs="*", default=list(WALL_TIME_KEYS),
                   help="JSON keys, HDF5 attributes and CSV columns left out (default: the wall-time ones)")
    p.add_argument("--show", type=int, default=20, help="differences shown per file")
    a = p.parse_args(argv)
    for root in (a.a, a.b):
        if not root.is_dir():
            p.error(f"{root} is not a folder")
    diffs, counts = compare(a.a, a.b, tuple(a.ignore_key))
    for rel, out in diffs.items():
        print(f"DIFFERS {rel}")
        for line in out[: a.show]:
            print(f"    {line}")
        if len(out) > a.show:
            print(f"    ... {len(out) - a.show} more")
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"compared {sum(counts.values())} files ({kinds}); ignored: {', '.join(a.ignore_key)}, "
          f"Markdown column {', '.join(WALL_TIME_MD_COLUMNS)}, {', '.join(d + '/' for d in SKIP_DIRS)} and hidden files")
    print("identical" if not diffs else f"{len(diffs)} file(s) differ")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
