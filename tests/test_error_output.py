"""Issue 33, items 6 and 7: how a command ends. Its one-line error reaches Snakemake's stderr even when
the job's log cannot be written (the results on a full disk); `--stop-after-epochs` ends in one line with
status 3, no traceback; a job cancelled with SIGTERM leaves no temporary file, and the temporary file a
killed (SIGKILL) writer left is removed when its job starts again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY, make_workdir, snakemake
from lspipe import cli

RECIPE = {"steps": 32, "batch_size": 64, "lr": 0.05, "checkpoint_every": 1, "augment": {"pad": 1, "flip": False}}
LSPIPE = [sys.executable, "-c", "import sys; from lspipe.cli import main; sys.exit(main())"]



def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _job_shell(command: list[str], log: str) -> subprocess.CompletedProcess:
    """``command`` run the way a workflow job runs it: the Snakefile's shell prefix (common.smk), then the rule's
    redirection of stdout and stderr into the log."""
    prefix = "set -euo pipefail; exec 3>&2; export LSPIPE_ERROR_FD=3; "
    assert prefix in (REPO / "workflow" / "rules" / "common.smk").read_text()
    quoted = " ".join(subprocess.list2cmdline([c]) if " " not in c else f"'{c}'" for c in command)
    return subprocess.run(["bash", "-c", f"{prefix}{quoted} > {log} 2>&1"], capture_output=True, text=True,
                          env=_env(), timeout=300)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_the_error_line_reaches_the_workflow_when_the_log_cannot_be_written(digits_npz, tmp_path):
    """/dev/full refuses every write with ENOSPC: a log on a full disk. The command's one line still reaches the
    job's stderr (Snakemake's), for a failing command and for one whose only failure is its log."""
    proc = _job_shell([*LSPIPE, "accuracy-table", "--evals", str(tmp_path / "absent.json"), "--csv",
                       str(tmp_path / "t.csv"), "--md", str(tmp_path / "t.md")], "/dev/full")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"lspipe accuracy-table: error: {tmp_path / 'absent.json'}: no such file or folder; " \
                                  "check the path (or build it first: snakemake <file>)"
    proc = _job_shell([*LSPIPE, "prepare-data", "--name", "digits", "--options", '{"source": "digits"}', "--out",
                       str(tmp_path / "d.npz")], "/dev/full")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "lspipe prepare-data: error: cannot write the output or log: No space left on device; free space on that "
        "file system (or point `results:` to another disk), then rerun"], proc.stderr
    # with a log that can be written, the line is in both (Snakemake shows the log of a failed job too)
    proc = _job_shell([*LSPIPE, "accuracy-table", "--evals", "absent.json", "--csv", "t.csv", "--md", "t.md"],
                      str(tmp_path / "job.log"))
    assert proc.stderr.strip() == (tmp_path / "job.log").read_text().strip() != ""


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_job_on_a_full_disk_shows_its_error_line_in_snakemakes_output(tmp_path):
    """The results' logs on a full file system (a tmpfs, where the test may mount one): the job's log stays
    empty, and Snakemake's output carries the job's one line."""
    work = make_workdir(tmp_path / "w")
    logs = work / "results" / "logs"
    if not _mount_tmpfs(logs, "16k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (logs / "prepare_data").mkdir()
        with open(logs / "filler", "wb") as fh:  # fill it up
            try:
                fh.write(b"\0" * 65536)
            except OSError:
                pass
        proc = snakemake(work, "--cores", "1", "results/data/digits.npz", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out[-3000:]
        assert (logs / "prepare_data" / "digits.log").read_text() == ""  # the log holds nothing
        assert "lspipe prepare-data: error: cannot write the output or log: No space left on device" in out, out[-3000:]
    finally:
        subprocess.run(["umount", str(logs)], capture_output=True)


def test_stop_after_epochs_ends_in_one_line_with_status_3(digits_npz, tmp_path, capsys):
    out = tmp_path / "a0_s0" / "model.pt"
    argv = ["train", "--data", str(digits_npz), "--arch", "mlp", "--recipe", json.dumps(RECIPE), "--seed", "0",
            "--threads", "1", "--no-progress", "--out", str(out), "--metrics", str(out.with_name("metrics.csv")),
            "--stop-after-epochs", "1"]
    capsys.readouterr()
    assert cli.main(argv) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("lspipe train: stopped: stopped after 1 epoch(s) at step 16 (run the same command again to "
                       "resume)") and not any("Traceback" in line for line in err), err
    assert out.with_name("model.pt.ckpt").exists() and not out.exists()
    assert cli.main(argv[:-2]) == 0 and out.exists()


_SLOW_FIGURE = """
import sys, time
import matplotlib.figure
real = matplotlib.figure.Figure.savefig
def slow(self, fname, *args, **kwargs):
    real(self, fname, *args, **kwargs)
    print("writing", fname, flush=True)
    time.sleep(60)  # cancelled while the temporary file is written
matplotlib.figure.Figure.savefig = slow
from lspipe.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_cancelled_or_killed_figure_write_leaves_no_temporary_file(tiny_run, tmp_path):
    evals = sorted(str(p) for p in (tiny_run / "results" / "calibration" / "digits" / "smallcnn" / "teacher").glob("a*.json"))
    figures = [tmp_path / "fig.pdf", tmp_path / "fig.png"]
    argv = ["reliability-figure", "--inputs", *evals, "--out", *map(str, figures), "--ls-alpha", "0.3", "--dpi", "50"]

    def start():
        proc = subprocess.Popen([sys.executable, "-c", _SLOW_FIGURE, *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env())
        line = proc.stdout.readline()
        assert line.startswith("writing"), (line, proc.stderr.read())
        temp = Path(line.split(" ", 1)[1].strip())
        assert temp.exists() and temp.name.startswith(".fig.pdf.") and temp.name.endswith(".tmp")
        return proc, temp

    proc, temp = start()  # cancelled (Snakemake on Ctrl-C, SLURM's scancel): SIGTERM
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    err = proc.stderr.read().strip().splitlines()
    assert err == ["lspipe reliability-figure: stopped by SIGTERM (the job was cancelled): nothing half-written is "
                   "left; rerun the job"], err
    assert not temp.exists() and not any(figures[0].parent.glob(".fig*"))
    proc, temp = start()  # killed: nothing can clean up; the next run of the job does
    proc.kill()
    proc.wait(timeout=60)
    assert temp.exists()
    assert cli.main(argv) == 0
    assert not temp.exists() and all(f.exists() for f in figures)
    assert not any(figures[0].parent.glob(".fig*"))
