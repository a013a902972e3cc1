"""The command line for people: --version, a description on every sub-command and help on every option
(defaults shown), the commands people type listed apart from the workflow's, progress off a terminal as
time-stamped logging lines, a missing dump named as missing."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

from lspipe import cli
from lspipe.base.progress import LogProgress, progress_bar


def _sub_action(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _commands():
    """``{primary name: sub-parser}``: each command once, aliases left out."""
    sub = _sub_action(cli.build_parser())
    return {a.dest: sub.choices[a.dest] for a in sub._choices_actions}


def _run(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "lspipe", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


# --------------------------------------------------------------------------- --version and --help
def test_version_is_the_installed_distributions_or_the_packages():
    from importlib.metadata import PackageNotFoundError, version

    import lspipe

    try:
        expected = version("lspipe")
    except PackageNotFoundError:
        expected = lspipe.__version__
    proc = _run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"lspipe {expected}", proc
    assert cli.version() == expected


def test_version_falls_back_to_the_package_without_a_distribution(monkeypatch):
    import importlib.metadata

    import lspipe

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert cli.version() == lspipe.__version__


def test_every_command_has_a_description_and_every_option_help():
    commands = _commands()
    assert len(commands) >= 20
    missing = []
    for name, parser in commands.items():
        if not (parser.description or "").strip():
            missing.append(f"{name}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not (action.help or "").strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}: no help")
    assert not missing, "\n".join(missing)


def test_help_shows_every_default():
    """An option with a default other than None shows it; a required one or a None default shows none."""
    p = cli.build_parser()
    text = _commands()["dump-activations"].format_help()
    flat = " ".join(text.split())
    dump = p.parse_args(["dump", "--model", "m", "--data", "d", "--out", "o"])
    assert f"(default: {dump.chunk_rows})" in flat and f"(default: {dump.compression})" in flat
    assert "(default: --progress)" in flat or "(default: --no-progress)" in flat
    # required options and None defaults: nothing appended
    assert not re.search(r"--model MODEL\s+[^\n]*default", text)
    assert "(default: None)" not in flat
    train = " ".join(_commands()["train"].format_help().split())
    assert "(default: teacher)" in train and "(default: None)" not in train
    for name, parser in _commands().items():
        assert "(default: None)" not in parser.format_help(), name
        assert "(default: )" not in parser.format_help(), name


def test_help_lists_commands_apart_from_the_workflows():
    text = cli.build_parser().format_help()
    usage = text.split("\n\n")[0]
    assert usage == "usage: lspipe [-h] [--version] <command> [options]"
    assert "{" not in text  # argparse's list of all the names is gone
    people = text.index("\ncommands:\n")
    internal = text.index("\nworkflow-internal commands:\n")
    options = text.index("\noptions:\n")
    assert people < internal < options
    # an entry: two spaces, the name, its aliases in brackets, then its help (after 2+ spaces or on the next line)
    listed = lambda section: set(re.findall(r"^  ([a-z][a-z-]+)(?: \([a-z, -]+\))?(?: {2}|\n)", section, re.M))  # noqa: E731
    assert listed(text[people:internal]) == set(cli.COMMANDS)
    commands = _commands()
    assert listed(text[internal:options]) == set(commands) - set(cli.COMMANDS)
    # every command a rule runs by its JSON blobs is internal (the claims report is for people too)
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    run_by_rules = set(re.findall(r"lspipe ([a-z][a-z-]+)", rules)) & set(commands)
    assert run_by_rules - {"claims"} <= set(commands) - set(cli.COMMANDS)
    assert {"train", "prepare-data", "analyse-model"} <= run_by_rules


def test_sub_command_usage_names_the_command():
    text = _commands()["calibrate"].format_help()
    assert text.startswith("usage: lspipe calibrate [-h] --dump DUMP --out OUT")


def test_unknown_command_is_one_short_line():
    proc = _run("no-such-command")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "lspipe: error: unknown command 'no-such-command' (see lspipe --help)"


def test_a_missing_dump_is_named_missing_with_the_command_that_makes_it(tmp_path):
    missing = tmp_path / "none.h5"
    for command in ("evaluate", "calibrate"):
        proc = _run(command, "--dump", str(missing), "--out", str(tmp_path / "out.json"))
        assert proc.returncode == 2, proc
        line = proc.stderr.strip()
        assert line.startswith(f"lspipe {command}: error: no such file: {missing}; make it first with "), line
        assert "lspipe dump-activations" in line and f"snakemake {missing}" in line and "damaged" not in line
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(b"not an HDF5 file")
    proc = _run("evaluate", "--dump", str(damaged), "--out", str(tmp_path / "out.json"))
    assert proc.returncode == 2 and "damaged or incomplete" in proc.stderr and "no such file" not in proc.stderr


# --------------------------------------------------------------------------- progress off a terminal
class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_log_progress_writes_a_line_every_interval_and_every_percent(caplog):
    clock = _Clock()
    caplog.set_level(logging.INFO, logger="lspipe.progress")
    bar = LogProgress(total=200, desc="train", unit="steps", interval=30.0, percent=25.0, clock=clock)
    for step in range(200):
        clock.t += 1.0  # one step a second
        bar.update(1)
        if step == 100:
            bar.set_postfix(loss="0.500", val_acc=0.25)
    bar.close()
    lines = [r.getMessage() for r in caplog.records]
    # 25 % marks at steps 50, 100, 150, 200; 30 s at steps 30, 80 (30 s after 50), 130, 180
    counts = [int(re.match(r"train: (\d+)/200 steps", line).group(1)) for line in lines]
    assert counts == [30, 50, 80, 100, 130, 150, 180, 200], lines
    assert lines[0] == "train: 30/200 steps (15%), 1 steps/s, 0:30 elapsed, 2:50 left"
    assert lines[-1] == "train: 200/200 steps (100%), 1 steps/s, 3:20 elapsed, loss=0.500, val_acc=0.25"
    n = len(lines)
    bar.close()  # a second close says nothing more
    assert len(caplog.records) == n


def test_log_progress_resumed_counts_from_the_initial_step_and_ends_with_a_line(caplog):
    clock = _Clock()
    caplog.set_level(logging.INFO, logger="lspipe.progress")
    with LogProgress(total=1000, initial=600, desc="train", unit="steps", interval=3600, clock=clock) as bar:
        for _ in range(50):
            clock.t += 2.0
            bar.update(1)
    lines = [r.getMessage() for r in caplog.records]
    # no 10 % mark crossed (600 -> 650), no hour passed: only the closing line; the rate counts this run's steps
    assert lines == ["train: 650/1000 steps (65%), 0.5 steps/s, 1:40 elapsed, 11:40 left"]


def test_disabled_progress_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger="lspipe.progress")
    bar = LogProgress(total=10, disable=True)
    for _ in range(10):
        bar.update()
    bar.close()
    assert caplog.records == []


def test_progress_bar_is_tqdm_on_a_terminal_and_log_lines_elsewhere(tmp_path):
    import io

    from tqdm.auto import tqdm

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    bar = progress_bar(total=5, desc="train", file=term)
    assert isinstance(bar, tqdm)
    bar.update(5)
    bar.close()
    assert "\r" in term.getvalue()
    assert isinstance(progress_bar(total=5, file=io.StringIO()), LogProgress)
    with open(tmp_path / "log", "w") as f:  # a job's log file
        assert isinstance(progress_bar(total=5, file=f, dynamic_ncols=True), LogProgress)


@pytest.mark.slow
def test_train_off_a_terminal_logs_time_stamped_progress_lines(tmp_path):
    """`lspipe train` with its stderr in a file (as in every workflow job): progress comes as logging lines
    with a date and time, and no tqdm carriage returns."""
    from lspipe.core import data as D

    D.prepare("digits", "digits", tmp_path / "digits.npz", val_size=0.2, test_size=0.25)
    recipe = {"steps": 20, "batch_size": 64, "lr": 0.05, "checkpoint_every": 1}
    log = tmp_path / "train.log"
    with open(log, "w") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "lspipe", "train", "--data", str(tmp_path / "digits.npz"), "--arch", "mlp",
             "--recipe", json.dumps(recipe), "--seed", "0", "--out", str(tmp_path / "m" / "model.pt"),
             "--metrics", str(tmp_path / "m" / "metrics.csv"), "--device", "cpu", "--threads", "1", "--progress"],
            stdout=subprocess.DEVNULL, stderr=err, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "\r" not in text
    lines = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) INFO lspipe\.progress: train: (\d+)/20 steps \(\d+%\)",
                       text, re.M)
    assert lines and lines[-1][1] == "20", text[-3000:]
    assert [int(n) for _, n in lines] == sorted(int(n) for _, n in lines)


def test_cli_help_in_a_fresh_process_loads_no_torch_and_lists_the_groups():
    code = ("import sys, contextlib, io\nfrom lspipe.cli import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules, 'workflow-internal commands:' in buf.getvalue())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.split() == ["False", "True"], proc.stderr

