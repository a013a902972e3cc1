"""Checkpoint and stop on SLURM's warning signal (issue 30): the signal side of ``lspipe train``.

Before SLURM ends a job (time limit, preemption) it sends ``SIGTERM`` (or the signal asked for with
``--signal``) and ``SIGKILL`` some seconds later. ``lspipe train`` (:func:`lspipe.engine.training.cmd_train`)
watches ``SIGTERM`` and ``SIGUSR1`` with a :class:`Preemption` for the whole command:

* while the training loop runs (:meth:`Preemption.loop`), a signal only sets a flag; the loop finishes
  the step in progress (a step is never cut, and no CUDA graph replay is interrupted: the flag is read
  between steps), writes a checkpoint at that step boundary, mid-epoch included, and raises
  :class:`Preempted`: the command prints one line and exits with :data:`EXIT_PREEMPTED` (75), so the
  attempt counts as failed and Snakemake's ``retries`` (or SLURM's requeue) start it again, resuming
  exactly at that step. More signals while the flag is up change nothing (SLURM signals every process
  of the job step, ``torchrun`` forwards its own, so a rank may get two);
* before and after the loop (loading data, saving the models), a signal raises
  :class:`~lspipe.base.errors.Terminated` as in every other command (status 143, temporary files removed).

Other commands keep ``lspipe.cli``'s own ``SIGTERM`` handling. ``LSPIPE_TEST_PREEMPT_AT_STEP=k`` raises
the flag once step ``k`` is done, as a signal arriving during that step would (the tests' hook).

Under ``torchrun`` the ranks agree (:func:`lspipe.engine.training` sums their flags every
:data:`SYNC_STEPS` steps and at every epoch's end), so all of them stop at the same step.

No torch here: ``lspipe --help`` imports the command modules.
"""

from __future__ import annotations

import contextlib
import os
import signal

from lspipe.base.errors import EXIT_PREEMPTED, Stopped, Terminated

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
TEST_STEP_ENV = "LSPIPE_TEST_PREEMPT_AT_STEP"
# Under torchrun the ranks' flags are summed every this many steps (one small all-reduce, which waits
# for the device): a stop comes at most this many steps after the signal.
SYNC_STEPS = 8


class Preempted(Stopped):
    """The run wrote its checkpoint on a signal and stopped (exit status :data:`EXIT_PREEMPTED`)."""

    exit_status = EXIT_PREEMPTED


class Preemption:
    """The flag of :mod:`lspipe.engine.preempt`: :meth:`watching` installs the handlers for a command,
    :meth:`loop` marks the training loop, :meth:`requested` is read between steps."""

    def __init__(self, environ=os.environ):
        self.signal: int | None = None  # the signal that raised the flag
        self.in_loop = False
        self.pid = os.getpid()
        step = environ.get(TEST_STEP_ENV, "")
        self.test_step = int(step) if step.strip().isdigit() else None
        self.hooked = False  # the test hook's step was done

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self.pid:
            return  # a forked child (a DataLoader worker) ends with its loader, not on SLURM's signal
        if self.in_loop:
            self.signal = self.signal or signum  # the loop stops at the next step boundary
            return
        raise Terminated()

    @contextlib.contextmanager
    def watching(self):
        """Handle :data:`SIGNALS` for the ``with`` block (the main thread only; elsewhere nothing is
        installed); the previous handlers come back afterwards."""
        try:
            previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        except ValueError:  # not the main thread: leave the handlers alone
            previous = {}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def loop(self):
        """The training loop: a signal now raises the flag instead of :class:`Terminated`."""
        self.in_loop = True
        try:
            yield self
        finally:
            self.in_loop = False

    def requested(self, step: int) -> bool:
        """Whether to checkpoint and stop now, after ``step`` steps: a signal came, or the test hook's step
        has been done (asked after every step: from then on the flag stays up, as a signal's does)."""
        self.hooked = self.hooked or step == self.test_step
        return self.signal is not None or self.hooked

    def why(self) -> str:
        if self.signal is not None:
            return signal.Signals(self.signal).name
        if self.hooked:
            return f"{TEST_STEP_ENV}={self.test_step}"
        return "a signal to another rank"  # torchrun: the ranks stop together
