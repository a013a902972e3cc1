"""``lspipe bench``'s reports: the engine against the baseline loop, the distillation case and the projection
of a configuration's training time, as Markdown tables. Torch-free."""

from __future__ import annotations


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
