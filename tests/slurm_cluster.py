"""Start and stop a throw-away single-node SLURM cluster on this machine (for tests/test_slurm.py).

Debian's SLURM 22.05 packages (``munge slurmctld slurmd slurm-client``) suffice. The cluster is
one node named after ``hostname`` at 127.0.0.1 with ``nproc`` CPUs, the machine's memory and
(by default) two fake GPUs of type ``fakegpu`` (``Gres=gpu:fakegpu:2``, backed by ``/dev/null``
and ``/dev/zero``), so ``sbatch --gpus=1`` and ``--gpus=fakegpu:1`` schedule like on a GPU cluster. There is no accounting database (``sacct`` does not work): run the Snakemake SLURM
executor with ``--slurm-status-command squeue``.

What it touches outside its own temporary directory, and how it cleans up:

* ``/etc/slurm/slurm.conf`` and ``gres.conf`` (the executor's job step clears ``SLURM_*``
  variables, so ``SLURM_CONF`` cannot point elsewhere). They carry a marker line; a config without
  the marker (a real cluster's) is never overwritten, and ours is removed again by :meth:`stop`.
* Three daemons -- ``munged`` (private key and socket in the temporary directory), ``slurmctld``,
  ``slurmd`` -- run in the foreground as children of this process; :meth:`stop` ends exactly
  those PIDs (SIGTERM, then SIGKILL), never anything found by name.
* An exclusive ``flock`` on ``/tmp/lspipe-slurm-test.lock`` serialises concurrent test sessions.

Needs root (the daemons and ``/etc/slurm``). Anything that makes the cluster impossible raises
:class:`SlurmUnavailable` with the reason, so a test can skip with it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client"]
BINARIES = ["munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "srun", "scancel"]
CONF_DIR = Path("/etc/slurm")
MARKER = "# written by lspipe tests/slurm_cluster.py -- safe to delete"
LOCK = Path("/tmp/lspipe-slurm-test.lock")
FAKE_GPU_FILES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here; the message says why."""


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def ensure_installed(install: bool = True, timeout: float = 300) -> None:
    """Make sure the SLURM and munge binaries exist, installing Debian's packages when allowed.

    Raises :class:`SlurmUnavailable` when they are missing and cannot be installed (not root, no
    apt-get, apt fails or exceeds ``timeout`` seconds).
    """
    missing = missing_binaries()
    if not missing:
        return
    why = f"SLURM binaries missing ({', '.join(missing)})"
    if not install:
        raise SlurmUnavailable(f"{why}; install: apt-get install -y {' '.join(PACKAGES)}")
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"{why} and not root, cannot apt-get install {' '.join(PACKAGES)}")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"{why} and no apt-get on this machine")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + timeout
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        left = deadline - time.monotonic()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(f"{why}; `{' '.join(cmd)}` took longer than {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise SlurmUnavailable(f"{why}; `{' '.join(cmd)}` failed: {(proc.stderr or proc.stdout)[-500:]}")
    missing = missing_binaries()
    if missing:
        raise SlurmUnavailable(f"installed {' '.join(PACKAGES)} but still missing: {', '.join(missing)}")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free right now (all held open while choosing)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 2048


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SingleNodeCluster:
    """One controller + one compute node + munge, all children of this process.

    Use as a context manager, or call :meth:`start` and (always, e.g. in a finalizer) :meth:`stop`.
    ``pids`` maps each daemon that was started to its PID.
    """

    def __init__(self, root: Path, cpus: int | None = None, gpus: int = 2, gpu_type: str = "fakegpu",
                 mem_mb: int | None = None):
        if not 1 <= gpus <= len(FAKE_GPU_FILES):
            raise ValueError(f"gpus must be 1..{len(FAKE_GPU_FILES)}")
        self.root = Path(root)
        self.cpus = cpus or len(os.sched_getaffinity(0)) or 1  # what `nproc` says
        self.gpus = gpus
        self.gpu_type = gpu_type
        # Memory is not a consumable resource here (CR_Core), so the node may declare more than the
        # machine has; at least 64 GB lets jobs' --mem requests schedule on small CI machines.
        self.mem_mb = mem_mb or max(_mem_mb(), 65536)
        self.host = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self._lock_fd: int | None = None
        self._wrote_conf = False

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    # --- configuration -------------------------------------------------------------------
    def _slurm_conf(self) -> str:
        r, h = self.root, self.host
        ctld_port, slurmd_port = _free_ports(2)
        return "\n".join([
            MARKER,
            "ClusterName=lspipetest",
            f"SlurmctldHost={h}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={r}/munge/munge.socket",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/slurmctld.pid",
            f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmctldLogFile={r}/slurmctld.log",
            f"SlurmdLogFile={r}/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "MinJobAge=300",
            "KillWait=5",
            "InactiveLimit=0",
            "GresTypes=gpu",
            f"NodeName={h} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb} "
            f"Gres=gpu:{self.gpu_type}:{self.gpus} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    def _gres_conf(self) -> str:
        # A GPU entry needs a File (one without is dropped) and each GPU its own; harmless
        # character devices stand in for them (no GPU is used).
        lines = [MARKER, "AutoDetect=off"]
        lines += [f"NodeName={self.host} Name=gpu Type={self.gpu_type} File={f}" for f in FAKE_GPU_FILES[: self.gpus]]
        return "\n".join(lines) + "\n"

    def _write_conf(self) -> None:
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("slurm.conf", "gres.conf"):
            path = CONF_DIR / name
            if path.exists() and MARKER not in path.read_text(errors="replace"):
                raise SlurmUnavailable(f"{path} belongs to a real SLURM installation; not overwriting it")
        self._wrote_conf = True
        (CONF_DIR / "slurm.conf").write_text(self._slurm_conf())
        (CONF_DIR / "gres.conf").write_text(self._gres_conf())

    def _remove_conf(self) -> None:
        if not self._wrote_conf:
            return
        for name in ("slurm.conf", "gres.conf"):
            path = CONF_DIR / name
            if path.exists() and MARKER in path.read_text(errors="replace"):
                path.unlink()

    # --- life cycle ----------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / f"{name}.out", "wb")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def _check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise SlurmUnavailable(f"{name} exited with {p.returncode} at start:\n{self.logs(name)}")

    def logs(self, name: str, tail: int = 3000) -> str:
        text = ""
        for f in (self.root / f"{name}.out", self.root / f"{name}.log"):
            if f.exists():
                text += f.read_text(errors="replace")[-tail:]
        return text

    def start(self, timeout: float = 60) -> "SingleNodeCluster":
        if os.geteuid() != 0:
            raise SlurmUnavailable("starting SLURM daemons needs root")
        ensure_installed(install=False)
        self._lock_fd = os.open(LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SlurmUnavailable(f"another test session holds {LOCK} (its SLURM cluster is running)")
                time.sleep(1)
        try:
            self._start(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, deadline: float) -> None:
        for d in ("munge", "state", "spool"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # munge clients need to reach the socket
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._write_conf()
        m = self.root / "munge"
        self._spawn("munged", [
            _sbin("munged"), "--foreground", "--force", f"--key-file={key}", f"--socket={m}/munge.socket",
            f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed",
        ])
        self._wait(lambda: (m / "munge.socket").exists(), deadline, "munged's socket")
        self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-i"])
        self._wait(lambda: self._query(["sinfo", "-h", "-o", "%P"]) is not None, deadline, "slurmctld")
        self._spawn("slurmd", [_sbin("slurmd"), "-D"])
        self._wait(lambda: (self._query(["sinfo", "-h", "-N", "-o", "%T"]) or "").strip() == "idle",
                   deadline, "the node to become idle")

    def _query(self, cmd: list[str]) -> str | None:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            return None
        return p.stdout if p.returncode == 0 else None

    def _wait(self, ready, deadline: float, what: str) -> None:
        while not ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise SlurmUnavailable(
                    f"timed out waiting for {what}:\n"
                    + "\n".join(f"--- {n}\n{self.logs(n)}" for n in self.procs)
                )
            time.sleep(0.5)

    def stop(self, grace: float = 10) -> None:
        """End every daemon this object started (by PID), remove our config, release the lock."""
        try:
            self._cancel_jobs()
            for name in ("slurmd", "slurmctld", "munged"):  # reverse start order
                p = self.procs.get(name)
                if p is None or p.poll() is not None:
                    continue
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(grace)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(grace)
        finally:
            self._remove_conf()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    def _cancel_jobs(self, timeout: float = 20) -> None:
        """Cancel whatever is still queued or running on this private cluster (all of it is ours)."""
        if "slurmctld" not in self.procs or self.procs["slurmctld"].poll() is not None:
            return
        ids = (self._query(["squeue", "-h", "-o", "%i"]) or "").split()
        if not ids:
            return
        subprocess.run(["scancel", *ids], capture_output=True, timeout=10)
        deadline = time.monotonic() + timeout
        while (self._query(["squeue", "-h", "-o", "%i"]) or "").split() and time.monotonic() < deadline:
            time.sleep(0.5)

    def __enter__(self) -> "SingleNodeCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
