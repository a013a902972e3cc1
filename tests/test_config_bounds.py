"""Issue 33, items 5, 9 and 10: the configuration refuses what it cannot mean. Duplicate keys in
``--config`` (as in files); NaN and infinity wherever a number is read; -0.0 is 0; every number that
sizes memory or time has a finite bound; an error quotes a short excerpt of a value (a YAML bomb's
expansion is not echoed); the streaming loader's workers are bounded (and capped at the cores);
and a results folder that is the working directory or holds the repository is refused."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY, make_workdir, planned_jobs, snakemake
from lspipe import cli
from lspipe.base import defaults
from lspipe.base.errors import ConfigError, DataError
from lspipe.core import config as C
from lspipe.core import source
from lspipe.core import stream as S
from lspipe.workflow import plan


def _config(**changes):
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(changes)
    return cfg


def _refused(cfg, *needles):
    with pytest.raises(ConfigError) as err:
        plan.validate(cfg)
    for needle in needles:
        assert needle in str(err.value), str(err.value)
    return str(err.value)


# --------------------------------------------------------------------------- NaN, infinity, -0.0


@pytest.mark.parametrize("key,value", [
    (("recipes", "tiny", "lr"), math.nan),
    (("recipes", "tiny", "grad_clip"), math.nan),
    (("datasets", "digits", "val_size"), math.nan),
    (("distillation", 0, "temperatures", 1), math.nan),
    (("distillation", 0, "beta"), math.nan),
    (("recipes", "tiny", "lr"), math.inf),
    (("streaming", "resident_max_gb"), math.inf),
])
def test_nan_and_infinity_are_refused_naming_the_key(key, value):
    cfg = _config(streaming={})
    node = cfg
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    where = ".".join(str(k) for k in key if not isinstance(k, int))
    text = _refused(cfg, "not a finite number")
    assert where.split(".")[-1] in text


def test_nan_from_a_yaml_file_and_on_the_command_line_is_refused(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(TINY.read_text().replace("lr: 0.05", "lr: .nan"))
    with pytest.raises(ConfigError, match=r"recipes\.tiny\.lr' is not a finite number"):
        plan.load(path)
    # a hand-called command's JSON option (json.loads reads NaN)
    recipe = json.dumps({"steps": 4, "lr": math.nan})
    assert "NaN" in recipe
    with pytest.raises(SystemExit):
        cli.main(["train", "--data", "x.npz", "--arch", "mlp", "--recipe", recipe, "--seed", "0", "--out", "m.pt",
                  "--metrics", "m.csv"])
    err = capsys.readouterr().err
    assert "lr is not a finite number" in err and len(err.strip().splitlines()) == 1, err


def test_minus_zero_is_zero():
    cfg = _config()
    cfg["teachers"][0]["alphas"] = [-0.0, 0.3]
    cfg["distillation"][0]["teacher_alphas"] = [-0.0, 0.3]
    p = plan.build(cfg)
    assert ("digits", "smallcnn", "a0_s0") in p.teacher_runs
    assert not any("a-0" in run for _, _, run in p.teacher_runs)
    assert math.copysign(1, cfg["teachers"][0]["alphas"][0]) == 1
    from lspipe.base.runs import fmt, run_name

    assert fmt(-0.0) == "0" and run_name(-0.0, 0) == "a0_s0"


# --------------------------------------------------------------------------- bounds


# every number that sizes memory or time: (schema key, the value the issue found passing)
BOUNDED = [
    ("calibration.bins", 10**9), ("figures.dpi", 10**6), ("teachers[].probe.copies", 10**9),
    ("teachers[].probe.per_class", 10**9), ("threads", 10**6), ("datasets.*.image_size", 10**6),
    ("recipes.*.steps", 10**12), ("recipes.*.batch_size", 10**9), ("recipes.*.eval_batch_size", 10**9),
    ("streaming.workers", 100000), ("streaming.prefetch_factor", 10**6), ("streaming.eval_batch_size", 10**9),
    ("dump.chunk_rows", 10**9), ("dump.max_train", 10**12), ("projections.per_class", 10**9),
    ("resources.mem_mb", 10**12), ("resources.min_runtime", 10**9), ("claims.tightness_triples", 10**12),
]


@pytest.mark.parametrize("key,value", BOUNDED)
def test_numbers_sizing_memory_or_time_have_a_finite_bound_with_a_reason(key, value):
    rule = defaults.node(key)
    assert rule.get("maximum") is not None and value > rule["maximum"], key
    assert "at most" in rule["description"], key  # the reason is written beside the bound
    cfg = _config()
    where = {"calibration.bins": ("calibration", "bins"), "figures.dpi": ("figures", "dpi"),
             "teachers[].probe.copies": ("teachers", 0, "probe", "copies"),
             "teachers[].probe.per_class": ("teachers", 0, "probe", "per_class"), "threads": ("threads",),
             "datasets.*.image_size": ("datasets", "digits", "image_size"), "recipes.*.steps": ("recipes", "tiny", "steps"),
             "recipes.*.batch_size": ("recipes", "tiny", "batch_size"),
             "recipes.*.eval_batch_size": ("recipes", "tiny", "eval_batch_size"),
             "streaming.workers": ("streaming", "workers"), "streaming.prefetch_factor": ("streaming", "prefetch_factor"),
             "streaming.eval_batch_size": ("streaming", "eval_batch_size"), "dump.chunk_rows": ("dump", "chunk_rows"),
             "dump.max_train": ("dump", "max_train"), "projections.per_class": ("projections", "per_class"),
             "resources.mem_mb": ("resources", "mem_mb"), "resources.min_runtime": ("resources", "min_runtime"),
             "claims.tightness_triples": ("claims", "tightness_triples")}[key]
    node = cfg
    for k in where[:-1]:
        node = node[k] if isinstance(node, list) else node.setdefault(k, {})
    node[where[-1]] = value
    text = _refused(cfg, "is greater than the maximum")
    assert len(text.splitlines()) == 2  # the problem, on one line


def test_an_error_quotes_a_short_excerpt_of_a_yaml_bomb(tmp_path):
    """A 1 KB file whose value expands to 9^8 strings (the billion laughs) is refused in a short message."""
    bomb = ["  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefg", "bcdefgh"):
        bomb.append(f"  {name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("bombs:\n" + "\n".join(bomb) + "\n" + TINY.read_text().replace("steps: 24", "steps: *h"))
    assert path.stat().st_size < 3000
    with pytest.raises(ConfigError) as err:
        plan.load(path)
    message = str(err.value)
    assert len(message) < 400 and "\n" not in message, message
    assert "'bombs.h' expands to 48,427,561 values" in message, message
    # a value that is merely too long (not a bomb) is quoted as an excerpt, too
    cfg = _config()
    cfg["recipes"]["tiny"]["steps"] = [list(range(100))] * 100
    message = _refused(cfg, "recipes.tiny.steps", "is not of type 'integer'", "...")
    assert len(message) < 600, message


# --------------------------------------------------------------------------- the streaming loader's workers


def test_loader_workers_are_bounded_and_capped_at_the_cores(capsys):
    cfg = _config(streaming={"workers": 100000})
    _refused(cfg, "streaming.workers", "greater than the maximum")
    with pytest.raises(DataError, match=r"workers=100000 is not allowed \(an integer 0\.\.256 or null\); fix streaming\.workers"):
        source.loader_settings(None, {source.LOADER_ENV: '{"workers": 100000}'})
    with pytest.raises(DataError, match=r"workers=-2 is not allowed"):
        source.loader_settings({"workers": -2})
    cores = S._cores()
    assert S._workers(cores + 5) == cores
    assert "using" in capsys.readouterr().err
    assert S._workers(0) == 0 and S._workers(None) == min(cores, 16)


# --------------------------------------------------------------------------- the results folder


@pytest.mark.parametrize("results", [".", "./", "..", str(REPO)])
def test_a_results_folder_that_is_not_a_folder_of_its_own_is_refused(results, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = _refused(_config(results=results), f"results {results!r}", "set results to a folder of its own")
    assert len(text.splitlines()) == 2


def test_a_results_folder_holding_a_repository_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clone").mkdir()
    (tmp_path / "clone" / "Snakefile").write_text("")
    _refused(_config(results="clone"), "holds a Snakefile")
    plan.validate(_config(results="elsewhere"))  # a folder of its own is fine


# --------------------------------------------------------------------------- --config duplicates


def test_duplicate_keys_in_config_arguments_are_refused():
    C.check_config_args(["recipes={tiny: {steps: 5}, other: {steps: 5}}", "results=r", "x=not: yaml: here"])
    with pytest.raises(ConfigError, match=r"--config recipes=\.\.\.: duplicate key 'steps' in its value, line 1, column 19"):
        C.check_config_args(["recipes={tiny: {steps: 5, steps: 7}}"])
    with pytest.raises(ConfigError, match=r"--config gives 'results' twice"):
        C.check_config_args(["results=a", "results=b"])


@pytest.mark.slow
def test_the_workflow_refuses_duplicate_keys_in_config_arguments(tmp_path):
    work = make_workdir(tmp_path / "w")
    proc = snakemake(work, "-n", "--config", "recipes={tiny: {steps: 20, steps: 30}}", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "duplicate key 'steps'" in out, out[-2000:]
    assert "Job stats" not in out
    proc = snakemake(work, "-n", "--config", "recipes={tiny: {steps: 20, batch_size: 8}}", check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
