"""The GPU check's bookkeeping (``benchmarks/gpu-check.sh``): a record and a one-line summary per step,
and the check's summary.

Each step of the check ends with ``record``: it appends one JSON line to every ``--steps`` file (the
step, its seconds, its limit, its exit status, the seconds since the check began, and the step's key
figures read from its JSON), copies the step's JSON to ``--copy-to`` (the folder that comes back from
a lent machine), and prints one line to stdout naming the figures. A check cut off at any point
therefore leaves every earlier figure in the copy folder and in its printed output.

    python -m lspipe.devicecheck record --step bench --seconds 41 --limit 200 --exit 0 \\
        --elapsed 60 --json OUT/bench.json --steps OUT/steps.jsonl --copy-to COPY
    python -m lspipe.devicecheck summary --out OUT [--smoke] [--copy-to COPY] [--t0 EPOCH_SECONDS]

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
    if step.startswith("bench") and data.get("results"):
        return {r["arch"]: _bench_figures(r) for r in data["results"]}
    if "projection" in data:
        p = data["projection"]
        return {"total_hours": p.get("total_hours"), "missing_archs": p.get("missing_archs"), "rates": p.get("rates"),
                "grids": {r["grid"]: r.get("hours") for r in p.get("rows", [])},
                "priced_at": {r["grid"]: r.get("variant") for r in p.get("rows", [])}}
    if "distillation" in data and data["distillation"]:
        d = data["distillation"]
        return {"teacher": d.get("teacher_arch"), "student": d.get("student_arch"),
                "students": len(d.get("temperatures", [])), "ratios": d.get("ratios"),
                "student_images_per_s": {m: v.get("images_per_s") for m, v in d.get("modes", {}).items()},
                **({"errors": d["errors"]} if d.get("errors") else {})}
    if step == "jobs" and "jobs" in data:
        keys = ("wall_s", "first_step_s", "steady_step_ms", "steady_model_images_per_s", "members")
        out = {k: {x: j.get(x) for x in keys} for k, j in data["jobs"].items()}
        proj = data["jobs"].get("teacher", {}).get("projection")
        if proj:
            out["teacher"]["measured_over_projected"] = proj.get("measured_over_projected")
        if data.get("concurrency"):
            c = data["concurrency"]
            out["concurrency"] = {"speedup": c.get("speedup"),
                                  "images_per_s": {str(r["processes"]): r["images_per_s"] for r in c["runs"]}}
        if data.get("errors"):
            out["errors"] = data["errors"]
        return out
    if step == "dump-check":
        keys = ("ok", "relative_diff", "rtol", "prediction_agreement", "bf16_relative_diff", "bf16_detectable",
                "dump_dtype", "trained_with")
        out = {k: data[k] for k in keys if k in data}
        if isinstance(data.get("engine"), dict):
            out["cuda_graph"] = data["engine"].get("cuda_graph")
        return out
    return {k: v for k, v in data.items() if isinstance(v, (int, float, str, bool))} or None  # e.g. cross-seed


def _bench_figures(r: dict) -> dict:
    base = (r.get("baseline") or {}).get("images_per_s")
    out = {"baseline_images_per_s": base, "engine_images_per_s": (r.get("engine") or {}).get("images_per_s"),
           "engine_variant": (r.get("engine") or {}).get("variant"), "ratio": r.get("ratio"),
           "variants": {k: v["images_per_s"] for k, v in (r.get("engine_variants") or {}).items()}}
    if r.get("preset"):
        out["preset"] = {k: r["preset"].get(k) for k in ("images_per_s", "variant", "recipe")}
    if r.get("fused_sizes"):
        out["fused_sizes"] = {g: {"images_per_s": f.get("images_per_s"), "peak_memory_mib": f.get("peak_memory_mib")}
                              for g, f in r["fused_sizes"].items()}
    if r.get("fused"):
        out["fused"] = {k: r["fused"].get(k) for k in ("models", "images_per_s", "speedup_vs_sequential")}
    if r.get("anatomy"):
        out["anatomy"] = r["anatomy"]
    if r.get("anatomies"):
        out["anatomies"] = r["anatomies"]
    if r.get("errors"):
        out["errors"] = r["errors"]
    return out


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
    if step.startswith("bench") and "ratios" not in fig:
        parts = []
        for arch, f in fig.items():
            s = (f"{arch} engine {_num(f['engine_images_per_s'])} img/s ({f.get('engine_variant')}; baseline "
                 f"{_num(f['baseline_images_per_s'])}, {_num(f['ratio'], '.2f')}x)")
            if f.get("fused_sizes"):
                s += ", fused " + "/".join(f"x{g} {_num(v['images_per_s'])}" for g, v in f["fused_sizes"].items() if g != "1")
            elif f.get("fused"):
                s += f", {f['fused']['models']} fused {_num(f['fused']['speedup_vs_sequential'], '.2f')}x"
            if f.get("errors"):
                s += f", {len(f['errors'])} failed"
            parts.append(s)
        return "; ".join(parts)
    if "ratios" in fig:
        r = fig["ratios"] or {}
        return (f"{fig['students']} {fig['student']} students of a {fig['teacher']} teacher: lockstep "
                f"{_num(r.get('lockstep'), '.2f')}x, fused {_num(r.get('fused'), '.2f')}x the separate runs "
                f"(fused {_num((fig.get('student_images_per_s') or {}).get('fused'))} student-img/s)")
    if "total_hours" in fig:
        if fig["total_hours"] is None:
            return f"n/a (architectures not measured: {', '.join(fig.get('missing_archs') or [])})"
        grids = ", ".join(f"{g} {h * 60:.1f} min" for g, h in fig["grids"].items() if h is not None)
        return f"{fig['total_hours'] * 60:.1f} min = {fig['total_hours']:.2f} h of training ({grids})"
    if step == "jobs":
        parts = [f"{k} {_num(v.get('wall_s'), '.1f')} s (first step {_num(v.get('first_step_s'), '.1f')} s, "
                 f"{_num(v.get('steady_model_images_per_s'))} model-img/s)" for k, v in fig.items()
                 if k in ("teacher", "student")]
        if fig.get("concurrency"):
            n = max(map(int, fig["concurrency"].get("images_per_s") or {"1": 0}))
            parts.append(f"{n} processes {_num(fig['concurrency'].get('speedup'), '.2f')}x one")
        if fig.get("errors"):
            parts.append(f"failed: {', '.join(fig['errors'])}")
        return "; ".join(parts)
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


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# The issue's goals on one GPU (issue 28), checked against the check's figures by :func:`goals`
GOALS = (
    ("best eager variant / plain loop, ResNet-56", ">=", 1.0),
    ("best eager variant / plain loop, AlexNet", ">=", 1.0),
    ("whole-step graph, one ResNet-56, images/s", ">=", 25000),
    ("whole-step graph, one AlexNet, images/s", ">=", 60000),
    ("ResNet-56 x7 fused with the preset's clipping, model-images/s", ">=", 60000),
    ("ResNet-56 x21 fused, model-images/s", ">=", 80000),
    ("7 AlexNet students fused with their teacher's forward, student-images/s", ">=", 130000),
    ("cifar10-gpu.yaml projected training, minutes", "<=", 6),
    ("real fused teacher job / its projection (training time)", "<=", 1.15),
    ("paper.yaml projected, GPU-hours", "<=", 6),
)


def goals(bench: dict | None, distill: dict | None, jobs: dict | None, proj: dict | None,
          proj_paper: dict | None) -> list[dict]:
    """Each goal of :data:`GOALS` with the figure measured for it (None: not measured) and whether it is met."""
    res = {r["arch"]: r for r in (bench or {}).get("results", [])}

    def eager_ratio(arch):
        r = res.get(arch, {})
        eager = [v["images_per_s"] for k, v in (r.get("engine_variants") or {}).items() if "graph" not in k]
        base = (r.get("baseline") or {}).get("images_per_s")
        return max(eager) / base if eager and base else None

    def graph(arch):
        v = (res.get(arch, {}).get("engine_variants") or {})
        graphed = [x["images_per_s"] for k, x in v.items()
                   if "graph" in k and ((x.get("config") or {}).get("engine") or {}).get("cuda_graph")]
        return max(graphed) if graphed else None

    def fused(arch, g):
        return ((res.get(arch, {}).get("fused_sizes") or {}).get(str(g)) or {}).get("images_per_s")

    d = (distill or {}).get("distillation") or {}
    teacher = ((jobs or {}).get("jobs") or {}).get("teacher", {}).get("projection") or {}
    total = lambda p: None if not p else (p.get("projection") or {}).get("total_hours")  # noqa: E731
    got = [eager_ratio("resnet56"), eager_ratio("alexnet"), graph("resnet56"), graph("alexnet"), fused("resnet56", 7),
           fused("resnet56", 21), ((d.get("modes") or {}).get("fused") or {}).get("images_per_s"),
           None if total(proj) is None else total(proj) * 60, teacher.get("measured_over_projected"),
           total(proj_paper)]
    return [{"goal": name, "target": f"{op} {target:g}", "measured": v,
             "met": None if v is None else (v >= target if op == ">=" else v <= target)}
            for (name, op, target), v in zip(GOALS, got)]


def smi_by_step(smi: Path, t0: float, steps: list[dict]) -> dict:
    """nvidia-smi's samples (``timestamp, util.gpu %, util.mem %, MiB, W``) averaged over each step's window
    (``t0``: the check's start, epoch seconds; a step ends ``elapsed_s`` after it and lasts ``seconds``)."""
    import datetime

    rows = []
    for line in smi.read_text().splitlines() if smi.exists() else []:
        parts = [p.strip() for p in line.split(",")]
        try:
            t = datetime.datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            rows.append((t, *(float(x) for x in parts[1:5])))
        except (ValueError, IndexError):
            continue
    out = {}
    for s in steps:
        if "elapsed_s" not in s or "limit_s" not in s:
            continue
        end = t0 + s["elapsed_s"]
        win = [r for r in rows if end - s["seconds"] <= r[0] <= end]
        if win:
            out[s["step"]] = {"samples": len(win), "gpu_util_mean": sum(r[1] for r in win) / len(win),
                              "gpu_util_max": max(r[1] for r in win), "memory_used_mib_max": max(r[3] for r in win),
                              "power_w_mean": sum(r[4] for r in win) / len(win)}
    return {"samples": len(rows), "by_step": out} if rows else {"samples": 0, "note": "no nvidia-smi samples"}


def summary(out: Path, smoke: bool, t0: float | None = None) -> dict:
    """The check's summary from the files its steps left in ``out`` (a step that failed or did not run
    leaves none: its figures are None and it is named in ``failed_steps``)."""
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
    bench, distill, jobs = _load(out / "bench.json"), _load(out / "bench-distill.json"), _load(out / "jobs.json")
    proj, proj_paper, dump = _load(out / "projection.json"), _load(out / "projection-paper.json"), _load(out / "dump-check.json")
    s = {"smoke": smoke, "machine": _load(out / "machine.json"), "steps": steps,
         "failed_steps": [x["step"] for x in steps if x.get("exit", 0) != 0],
         "bench": figures("bench", bench), "distillation": (distill or {}).get("distillation"),
         "jobs": figures("jobs", jobs), "dump_check": dump, "cross_seed": _load(out / "cross-seed.json"),
         "goals": goals(bench, distill, jobs, proj, proj_paper)}
    for key, p in (("projection", proj), ("projection_paper", proj_paper)):
        pr = (p or {}).get("projection")
        s[key] = None if pr is None else {
            "config": pr.get("config"), "total_hours": pr["total_hours"],
            "total_minutes": None if pr["total_hours"] is None else pr["total_hours"] * 60, "rates": pr["rates"],
            "warmup_s": pr.get("warmup_s"), "rows": pr["rows"]}
    if t0 is not None:
        s["nvidia_smi"] = smi_by_step(out / "smi.csv", t0, steps)
    s["ok"] = (not s["failed_steps"] and bool(dump and dump.get("ok"))
               and (smoke or (s["projection"] or {}).get("total_hours") is not None))
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
    s.add_argument("--t0", type=float, default=None, help="the check's start (epoch seconds): nvidia-smi per step")
    a = p.parse_args(argv)
    if a.cmd == "record":
        _, text = record(a.step, a.seconds, a.limit, a.exit, a.elapsed, a.json, a.steps, a.copy_to, not a.no_copy)
        print(text, flush=True)
        return 0
    out = Path(a.out)
    summ = summary(out, a.smoke, a.t0)
    (out / SUMMARY_FILE).write_text(json.dumps(summ, indent=2))
    if a.copy_to:
        shutil.copyfile(out / SUMMARY_FILE, Path(a.copy_to) / SUMMARY_FILE)
    minutes = (summ["projection"] or {}).get("total_minutes")
    met = [g for g in summ["goals"] if g["met"] is not None]
    print(f"gpu-check: {'OK' if summ['ok'] else 'FAILED'}; projected GPU-preset training "
          f"{'n/a' if minutes is None else f'{minutes:.1f} min'}; goals met {sum(g['met'] for g in met)} of "
          f"{len(met)} measured ({len(summ['goals'])} in all)"
          f"{'; failed steps: ' + ', '.join(summ['failed_steps']) if summ['failed_steps'] else ''}; "
          f"summary -> {out / SUMMARY_FILE}", flush=True)
    return 0 if summ["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
