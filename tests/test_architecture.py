"""The house with floors (docs/architecture.md): lspipe's import graph, module-level and function-level
imports alike, against the floor table of that document; torch only where the table says; `lspipe --help`,
`lspipe <command> --help` and the analysis commands without torch; every default from the schema."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY

PACKAGE = REPO / "lspipe"
DOC = REPO / "docs" / "architecture.md"
FOLDER_FLOORS = {"base": 0, "core": 1, "engine": 2, "experiments": 3, "workflow": 4}  # and 5 directly under lspipe/
HEAVY = ("torch", "torchvision", "timm")  # third-party packages that load torch


# --------------------------------------------------------------------------- the floor table


def floor_table() -> dict[str, dict]:
    """``{module: {"floor", "also", "torch"}}`` from the table of docs/architecture.md."""
    rows = {}
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `lspipe"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"docs/architecture.md: a floor-table row needs 4 cells: {line}"
        module = cells[0].strip("`")
        package = module.rpartition(".")[0]
        # a module of its own package by its name, any other by its full name (lspipe.experiments.calibration)
        also = {m if m.startswith("lspipe.") else f"{package}.{m}"
                for m in (c.strip().strip("`") for c in cells[2].split(",")) if m}
        assert cells[3] in ("yes", "no"), f"docs/architecture.md: torch is yes or no: {line}"
        assert module not in rows, f"docs/architecture.md lists {module} twice"
        rows[module] = {"floor": int(cells[1]), "also": also, "torch": cells[3] == "yes"}
    return rows


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def folder_floor(module: str) -> int:
    """The floor a module's folder says: ``lspipe/<folder>/<module>.py`` or a package; 5 directly under ``lspipe/``."""
    parts = module.split(".")
    return FOLDER_FLOORS[parts[1]] if len(parts) >= 2 and parts[1] in FOLDER_FLOORS else 5


def imports(path: Path, name: str, known: set[str]) -> list[tuple[str, int, str]]:
    """``(target, line, kind)`` of every import in a module: kind ``module`` (executed when the module is
    imported), ``function`` (inside a function) or ``typing`` (under ``if TYPE_CHECKING:``). A target is
    an lspipe module (``from lspipe.x import y`` names module ``lspipe.x.y`` when that is one) or the
    top-level name of a third-party package."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []

    def visit(node, kind):
        for child in ast.iter_child_nodes(node):
            inner = kind
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = "function"
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test) and kind == "module":
                for sub in child.body:
                    visit(ast.Module(body=[sub], type_ignores=[]), "typing")
                for sub in child.orelse:
                    visit(ast.Module(body=[sub], type_ignores=[]), kind)
                continue
            targets = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(up + ([child.module] if child.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names]
            for t in targets:
                if t.split(".")[0] == "lspipe":
                    while t not in known:
                        t = t.rpartition(".")[0]
                    if t != name:
                        out.append((t, child.lineno, kind))
                else:
                    out.append((t.split(".")[0], child.lineno, kind))
            visit(child, inner)

    visit(tree, "module")
    return out


def graph():
    mods = modules()
    return mods, {m: imports(p, m, set(mods)) for m, p in mods.items()}


def test_every_module_is_on_a_floor_of_its_folder():
    table, mods = floor_table(), modules()
    packages = {m for m, p in mods.items() if p.name == "__init__.py"}
    assert sorted(set(mods) - packages - set(table)) == [], "modules missing from the floor table of docs/architecture.md"
    assert sorted(set(table) - set(mods)) == [], "rows of docs/architecture.md without a module"
    for module, row in table.items():
        assert row["floor"] == folder_floor(module), f"{module} is on floor {row['floor']}, its folder on {folder_floor(module)}"
        assert row["also"] <= set(table) and all(table[m]["floor"] == row["floor"] for m in row["also"]), \
            f"{module}: the modules it may also import must be modules of its own floor: {sorted(row['also'])}"


def test_imports_go_down_or_along_the_listed_ones():
    table = floor_table()
    mods, edges = graph()
    wrong = []
    for module, deps in edges.items():
        mine, allowed = folder_floor(module), table.get(module, {"also": set()})["also"]
        for target, line, kind in deps:
            if not target.startswith("lspipe.") or folder_floor(target) < mine or target in allowed:
                continue
            wrong.append(f"{mods[module].relative_to(REPO)}:{line}: {module} (floor {mine}) imports {target} "
                         f"(floor {folder_floor(target)}, at {kind} level)")
    assert not wrong, "imports against the floors of docs/architecture.md:\n" + "\n".join(wrong)


def test_the_import_graph_has_no_cycle():
    _, edges = graph()
    succ = {m: sorted({t for t, _, _ in deps if t in edges}) for m, deps in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in succ[m]:
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in succ:
        if m not in state:
            visit(m)


def test_torch_only_where_the_table_says_and_function_imports_only_for_start_up():
    table = floor_table()
    mods, edges = graph()

    def loads_torch(m, seen=()):
        deps = edges[m]
        if any(t in HEAVY for t, _, kind in deps if kind == "module"):
            return True
        return any(loads_torch(t, seen + (m,)) for t, _, kind in deps
                   if kind == "module" and t in edges and t not in seen)

    wrong = [f"{m}: the table says torch {'yes' if row['torch'] else 'no'}, importing it "
             f"{'loads' if loads_torch(m) else 'does not load'} torch" for m, row in table.items()
             if row["torch"] != loads_torch(m)]
    assert not wrong, "the torch column of docs/architecture.md:\n" + "\n".join(wrong)
    # a function-level import of an lspipe module buys start-up time only when that module loads torch
    # (or matplotlib: lspipe.core.plotting); any other is written at the top of the module
    needless = [f"{mods[m].relative_to(REPO)}:{line}: {t}" for m, deps in edges.items() for t, line, kind in deps
                if kind == "function" and t.startswith("lspipe") and t != "lspipe.core.plotting"
                and not table.get(t, {}).get("torch")]
    assert not needless, "function-level imports of modules that load neither torch nor matplotlib:\n" + "\n".join(needless)


# --------------------------------------------------------------------------- rooms of a size one can read

MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 100


def test_no_module_over_800_lines_and_no_function_over_100():
    """A module that grows past 800 lines mixes concerns (split it by concern, as dumpfile/activations,
    claims/ or bench/ are); a function past 100 lines does several things (give each its own)."""
    long_modules, long_functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")) + sorted((REPO / "benchmarks").glob("*.py")):
        rel, text = path.relative_to(REPO), path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{rel}:{node.lineno}: {node.name}, {n} lines")
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long_modules)
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long_functions)


# --------------------------------------------------------------------------- no torch without a model


def _run(code: str, cwd: Path = REPO) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_help_imports_no_torch():
    """`lspipe --help` and `lspipe <command> --help`, every command and alias, in one fresh process."""
    out = _run("""
import contextlib, io, json, sys
from lspipe.cli import build_parser, main
sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
loaded = {}
for argv in [["--help"]] + [[name, "--help"] for name in sub.choices]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
    if "torch" in sys.modules and not loaded:
        loaded = {"first": argv}
print(json.dumps({"commands": sorted(sub.choices), "torch": "torch" in sys.modules, **loaded}))
""")
    assert not out["torch"], f"`lspipe {' '.join(out['first'])}` imports torch"
    assert {"train", "train-fused", "train-lockstep", "dump-activations", "dump", "evaluate", "claims"} <= set(out["commands"])


@pytest.mark.slow
def test_analysis_commands_import_no_torch(tiny_run, tmp_path):
    """The analysis commands, run on the tiny end-to-end outputs in one fresh process, never load torch."""
    cfg = yaml.safe_load(TINY.read_text())
    r = tiny_run / "results"
    teacher_dumps = sorted(str(p) for p in (r / "dumps").rglob("teacher/*.h5"))
    cals = sorted(str(p) for p in (r / "calibration").rglob("teacher/*.json"))
    grid = sorted(str(p) for p in (r / "calibration" / "digits" / "smallcnn").rglob("*.json"))
    teacher_evals = sorted(str(p) for p in (r / "eval").rglob("teacher/*.json"))
    student_evals = sorted(str(p) for p in (r / "eval").rglob("student/*.json"))
    hard = [p for p in teacher_dumps if p.endswith("/a0_s0.h5")]
    smooth = [p for p in teacher_dumps if re.search(r"/a0\.\d+_s0\.h5$", p)][:1]
    probe = next(str(p) for p in (r / "models").rglob("teacher/a0_s0/probe.h5"))
    gamma = next(str(p) for p in (r / "tables").glob("distillation_gamma_*.csv"))
    evals = teacher_evals + student_evals
    o = tmp_path
    commands = [
        ["calibrate", "--dump", hard[0], "--out", f"{o}/cal.json"],
        ["calibration-table", "--inputs", *cals, "--csv", f"{o}/cal.csv", "--md", f"{o}/cal.md"],
        ["reliability-figure", "--inputs", *grid, "--out", f"{o}/fig2.png"],
        ["accuracy-table", "--evals", *teacher_evals, "--csv", f"{o}/acc.csv", "--md", f"{o}/acc.md"],
        ["projections-figure", "--rows", json.dumps(cfg["projections"]["rows"]), "--hard", *hard[:1], "--ls", *smooth,
         "--out", f"{o}/fig1.png", "--ls-alpha", smooth[0].rsplit("/a", 1)[1].split("_")[0]],
        ["tightness-table", "--dumps", *hard, "--out", f"{o}/tight.csv"],
        ["distillation-gamma", "--dumps", *hard, "--temperatures", "1", "2", "--out", f"{o}/gamma.csv"],
        ["distillation-figure", "--teacher-evals", *teacher_evals, "--student-evals", *student_evals, "--gamma", gamma,
         "--csv", f"{o}/dist.csv", "--figures", f"{o}/fig5.png"],
        ["distillation-teacher-projections", "--hard", hard[0], "--ls", smooth[0], "--classes", '["0", "1", "2"]',
         "--out", f"{o}/tp.png"],
        ["mi-curve", "--probe", probe, "--out", f"{o}/mi.csv", "--alpha", "0", "--seed", "0"],
        ["mi-figure", "--curves", f"{o}/mi.csv", "--csv", f"{o}/mi_table.csv", "--out", f"{o}/fig6.png"],
        ["claims", "--results", str(r), "--md", f"{o}/claims.md", "--json", f"{o}/claims.json"],
        ["experiments-table", "--evals", *evals,
         "--calibrations", *[e.replace("/eval/", "/calibration/") for e in evals],
         "--dumps", *[e.replace("/eval/", "/dumps/").replace(".json", ".h5") for e in evals],
         "--benchmarks", *[f"{o}/none.tsv"] * len(evals), "--csv", f"{o}/exp.csv", "--md", f"{o}/exp.md"],
    ]
    out = _run(f"""
import json, sys
from lspipe.cli import main
done = []
for argv in {commands!r}:
    status = main(argv)
    done.append([argv[0], status, "torch" in sys.modules])
print(json.dumps(done))
""", cwd=tiny_run)
    assert [c[0] for c in out] == [c[0] for c in commands]
    assert all(status == 0 for _, status, _ in out), out
    loaded = [name for name, _, torch in out if torch]
    assert not loaded, f"torch was loaded by `lspipe {loaded[0]}`"


# --------------------------------------------------------------------------- defaults from the schema only


def _schema_defaults() -> dict[str, list]:
    """Every key of the config schema with a default -> its defaults (a key name can occur in several sections)."""
    out: dict[str, list] = {}

    def walk(node):
        if isinstance(node, dict):
            for key, sub in node.get("properties", {}).items():
                if isinstance(sub, dict) and "default" in sub:
                    out.setdefault(key, []).append(sub["default"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text()))
    return out


def _same(literal, default) -> bool:
    return type(literal) is type(default) and literal == default or (
        isinstance(literal, (list, tuple)) and isinstance(default, list) and list(literal) == default)


# literal values under names that are config keys elsewhere, but mean something else here: (file, where, name)
NOT_SETTINGS = {
    ("lspipe/bench/timing.py", "parameter", "seed"): "the benchmark's own random data and initialisation",
    ("lspipe/bench/settings.py", "dict", "amp"): "an engine variant the benchmark measures, not a default",
    ("lspipe/bench/settings.py", "dict", "channels_last"): "an engine variant the benchmark measures, not a default",
    ("lspipe/tiny_imagenet.py", "parameter", "seed"): "the tiny tree's random choice of images",
    ("lspipe/core/stream.py", "parameter", "seed"): "the training seed of a loader (the config's seeds have no default)",
    ("lspipe/engine/activations.py", "parameter", "seed"): "the seed of a dump's training subset (dump-activations --seed)",
    ("lspipe/engine/commands.py", "option", "seed"): "the seed of a dump's training subset (dump-activations --seed)",
    ("lspipe/experiments/mi.py", "get", "ddof"): "the convention of a curve CSV written before it had a ddof column",
}


def test_no_literal_copy_of_a_schema_default():
    """A function parameter, ``.get(key, value)``, ``{key: value, **given}`` or an ``add_argument`` default that
    copies the schema's default of a config key of that name is refused: take it from lspipe.base.defaults."""
    defaults = _schema_defaults()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            pairs = []  # (where, name, value node)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                pos = a.posonlyargs + a.args
                pairs += [("parameter", x.arg, d) for x, d in zip(pos[len(pos) - len(a.defaults):], a.defaults)]
                pairs += [("parameter", x.arg, d) for x, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "setdefault") \
                    and len(node.args) == 2 and isinstance(node.args[0], ast.Constant):
                pairs.append(("get", node.args[0].value, node.args[1]))
            elif isinstance(node, ast.Dict) and None in node.keys:
                pairs += [("dict", k.value, v) for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
                dest = next((a.value.lstrip("-").replace("-", "_") for a in node.args if isinstance(a, ast.Constant)), "")
                pairs += [("option", dest, k.value) for k in node.keywords if k.arg == "default"]
            for where, name, value in pairs:
                if name not in defaults or (rel, where, name) in NOT_SETTINGS:
                    continue
                try:
                    literal = ast.literal_eval(value)
                except ValueError:
                    continue  # not a literal: e.g. default("...")
                # an empty container ({} or [] for a section or list left out) copies no value: it says "none"
                if literal is not None and literal not in ({}, [], ()) and any(_same(literal, d) for d in defaults[name]):
                    found.append(f"{rel}:{value.lineno}: {name} = {literal!r} ({where})")
    assert not found, "literal copies of the schema's defaults (use lspipe.base.defaults):\n" + "\n".join(found)
