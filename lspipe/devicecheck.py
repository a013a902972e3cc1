"""The GPU check's bookkeeping (``benchmarks/gpu-check.sh``): a record and a one-line summary per step,
and the check's summary.

Each step of the check ends with ``record``: it appends one JSON line to every ``--steps`` file (the
step, its seconds, its limit, its exit status, the seconds since the check began, and the step's key
figures read from its JSON), copies the step's JSON to ``--copy-to`` (the folder that comes back from
a lent machine), and prints one line to stdout naming the figures. A check cut off at any point
therefore leaves every earlier figure in the copy folder and in its printed output.

    python -m lspipe.devicecheck record --step bench-eager --seconds 41 --limit 120 --exit 0 \\
        --elapsed 60 --json OUT/bench-eager.json --steps OUT/steps.jsonl --copy-to COPY
    python -m lspipe.devicecheck summary --out OUT [--smoke] [--copy-to COPY]

Only the standard library is imported (a step's record must not fail where torch does).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

SUMMARY_FILE = "gpu-check.json"


def _num(x, fmt: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, fmt)


def figures(step: str, data: dict | None) -> dict | None:
    """The key figures of a step's JSON (``None`` when the step wrote none)."""
    if data is None:
        return None
    if "not_run" in data:
        return {"not_run": data["not_run"]}
    if step == "machine":
        keys = ("device", "gpu", "capability", "memory_gib", "bf16_supported", "torch", "cuda", "python", "nvidia_smi")
        return {k: data[k] for k in keys if k in data}
    if step.startswith("bench-") and "results" in data and data["results"]:
        out = {}
        for r in data["results"]:
            out[r["arch"]] = {"baseline_images_per_s": r["baseline"]["images_per_s"],
                              "engine_images_per_s": r["engine"]["images_per_s"],
                              "engine_variant": r["engine"].get("variant"), "ratio": r["ratio"]}
            if r.get("fused"):
                out[r["arch"]]["fused"] = {k: r["fused"].get(k) for k in ("models", "images_per_s",
                                                                          "speedup_vs_sequential")}
        return out
    if "distillation" in data and data["distillation"]:
        d = data["distillation"]
        return {"teacher": d.get("teacher_arch"), "student": d.get("student_arch"),
                "students": len(d.get("temperatures", [])), "ratios": d.get("ratios"),
                "student_images_per_s": {m: v.get("images_per_s") for m, v in d.get("modes", {}).items()}}
    if "projection" in data:
        p = data["projection"]
        return {"total_hours": p.get("total_hours"), "missing_archs": p.get("missing_archs"), "rates": p.get("rates"),
                "grids": {r["grid"]: r.get("hours") for r in p.get("rows", [])}}
    if step == "dump-check":
        keys = ("ok", "relative_diff", "rtol", "prediction_agreement", "bf16_relative_diff", "bf16_detectable",
                "dump_dtype", "trained_with")
        return {k: data[k] for k in keys if k in data}
    return None


def describe(step: str, fig: dict | None) -> str:
    """The figures of one step in a few words."""
    if not fig:
        return ""
    if "not_run" in fig:
        return f"not run: {fig['not_run']}"
    if step == "machine":
        if fig.get("gpu"):
            return (f"{fig['gpu']} (sm {'.'.join(map(str, fig.get('capability', [])))}, {fig.get('memory_gib')} GiB), "
                    f"torch {fig.get('torch')}, CUDA {fig.get('cuda')}, Python {fig.get('python')}")
        return f"{fig.get('device')}, torch {fig.get('torch')}, Python {fig.get('python')}"
    if step.startswith("bench-") and "ratios" not in fig:
        parts = []
        for arch, f in fig.items():
            s = (f"{arch} engine {_num(f['engine_images_per_s'])} img/s ({f.get('engine_variant')}; baseline "
                 f"{_num(f['baseline_images_per_s'])}, {_num(f['ratio'], '.2f')}x)")
            if f.get("fused"):
                s += f", {f['fused']['models']} fused {_num(f['fused']['speedup_vs_sequential'], '.2f')}x"
            parts.append(s)
        return "; ".join(parts)
    if "ratios" in fig:
        r = fig["ratios"] or {}
        return (f"{fig['students']} {fig['student']} students of a {fig['teacher']} teacher: lockstep "
                f"{_num(r.get('lockstep'), '.2f')}x, fused {_num(r.get('fused'), '.2f')}x the separate runs")
    if "total_hours" in fig:
        if fig["total_hours"] is None:
            return f"n/a (architectures not measured: {', '.join(fig.get('missing_archs') or [])})"
        grids = ", ".join(f"{g} {h * 60:.1f} min" for g, h in fig["grids"].items() if h is not None)
        return f"{fig['total_hours'] * 60:.1f} min of training ({grids})"
    if step == "dump-check":
        return (f"{'OK' if fig.get('ok') else 'MISMATCH'}: relative difference {_num(fig.get('relative_diff'), '.1e')} "
                f"(limit {fig.get('rtol')}), predictions agree {_num(fig.get('prediction_agreement'), '.3f')}, "
                f"a bf16 forward would differ by {_num(fig.get('bf16_relative_diff'), '.1e')}")
    return ""


def record(step: str, seconds: int, limit: int, exit_status: int, elapsed: int, json_file: str | None,
           steps: list[str], copy_to: str | None, copy: bool = True) -> tuple[dict, str]:
    """Append the step's line to each ``steps`` file, copy its JSON, and return (line, summary)."""
    data, note = None, None
    if json_file:
        try:
            data = json.loads(Path(json_file).read_text())
        except FileNotFoundError:
            note = f"{Path(json_file).name} not written"
        except (OSError, ValueError) as err:
            note = f"{Path(json_file).name} unreadable: {err}"
    fig = figures(step, data)
    line = {"step": step, "seconds": seconds, "limit_s": limit, "exit": exit_status, "elapsed_s": elapsed,
            "file": Path(json_file).name if json_file else None, "figures": fig}
    if note:
        line["note"] = note
    text = json.dumps(line) + "\n"
    for f in steps:
        with open(f, "a") as fh:
            fh.write(text)
    if copy_to and json_file and data is not None and copy:
        shutil.copyfile(json_file, Path(copy_to) / Path(json_file).name)
    if exit_status == 0:
        status = f"ok in {seconds}s (limit {limit}s)"
    elif exit_status in (124, 137):
        status = f"FAILED: still running after its {limit}s limit"
    else:
        status = f"FAILED: exit status {exit_status} after {seconds}s"
    what = describe(step, fig) or note or ""
    return line, f"[gpu-check +{elapsed}s] {step}: {status}" + (f" | {what}" if what else "")


def summary(out: Path, smoke: bool) -> dict:
    """The check's summary from the JSON files its steps left in ``out``."""
    load = lambda n: json.loads((out / n).read_text())  # noqa: E731
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
    s = {"smoke": smoke, "machine": load("machine.json"), "bench": {}, "dump_check": load("dump-check.json"),
         "steps": steps}
    for name in ("eager", "compiled"):
        s["bench"][name] = figures(f"bench-{name}", load(f"bench-{name}.json"))
    s["bench"]["distillation"] = load("bench-distill.json").get("distillation")
    pr = load("projection.json")["projection"]
    s["projection_eager_figures"] = load("projection-eager.json")["projection"]["total_hours"]
    s["projection"] = {"config": pr["config"], "total_hours": pr["total_hours"],
                       "total_minutes": None if pr["total_hours"] is None else pr["total_hours"] * 60,
                       "rates": pr["rates"], "rows": pr["rows"]}
    s["ok"] = bool(s["dump_check"]["ok"]) and (smoke or pr["total_hours"] is not None)
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lspipe.devicecheck", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="record a step that has ended")
    r.add_argument("--step", required=True)
    r.add_argument("--seconds", type=int, required=True)
    r.add_argument("--limit", type=int, required=True)
    r.add_argument("--exit", type=int, required=True)
    r.add_argument("--elapsed", type=int, required=True, help="seconds since the check began")
    r.add_argument("--json", default=None, help="the JSON file the step wrote")
    r.add_argument("--steps", action="append", default=[], help="a steps.jsonl to append to (repeatable)")
    r.add_argument("--copy-to", default=None, help="copy the step's JSON into this folder")
    r.add_argument("--no-copy", action="store_true", help="record the figures without copying the file")
    s = sub.add_parser("summary", help="write OUT/gpu-check.json from the steps' files")
    s.add_argument("--out", required=True)
    s.add_argument("--smoke", action="store_true")
    s.add_argument("--copy-to", default=None)
    a = p.parse_args(argv)
    if a.cmd == "record":
        _, text = record(a.step, a.seconds, a.limit, a.exit, a.elapsed, a.json, a.steps, a.copy_to, not a.no_copy)
        print(text, flush=True)
        return 0
    out = Path(a.out)
    summ = summary(out, a.smoke)
    (out / SUMMARY_FILE).write_text(json.dumps(summ, indent=2))
    if a.copy_to:
        shutil.copyfile(out / SUMMARY_FILE, Path(a.copy_to) / SUMMARY_FILE)
    minutes = summ["projection"]["total_minutes"]
    print(f"gpu-check: {'OK' if summ['ok'] else 'FAILED'}; projected GPU-preset training "
          f"{'n/a' if minutes is None else f'{minutes:.1f} min'}; summary -> {out / SUMMARY_FILE}", flush=True)
    return 0 if summ["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
