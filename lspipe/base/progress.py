"""Progress of a long loop (training steps, dumped images): a bar on a terminal, log lines elsewhere.

On a terminal, :func:`progress_bar` is tqdm's bar, redrawn in place with ``\\r``. A job's log file
is no terminal: there the redraws would pile up as one endless line without times, so it returns a
:class:`LogProgress` instead, which writes one line through :mod:`logging` (logger
``lspipe.progress``) every ``mininterval`` seconds and every ``percent`` per cent of the total, and
one at the end, e.g. ::

    2026-12-05 14:03:10 INFO lspipe.progress: train: 400/1000 steps (40%), 3.1 steps/s, 2:09 elapsed, 3:14 left, loss=0.412

The command line (:func:`lspipe.cli.main`) configures :mod:`logging` with those time stamps; code
that calls the engine in-process decides for itself (without a handler, INFO lines are not shown).
"""

from __future__ import annotations

import logging
import sys
import time

from tqdm.auto import tqdm

LOG = logging.getLogger("lspipe.progress")


def progress_bar(*, total: int, initial: int = 0, desc: str = "", unit: str = "it", disable: bool = False,
                 mininterval: float | None = None, percent: float = 10.0, file=None, **tqdm_kwargs):
    """tqdm's bar when ``file`` (default: stderr) is a terminal, else a :class:`LogProgress`.

    Takes tqdm's arguments: ``mininterval`` is the bar's redraw interval (default 0.5 s), and off a
    terminal the longest time between two log lines (default 30 s); ``percent`` applies off a
    terminal only. Both objects have
    tqdm's ``update``, ``set_postfix`` and ``close`` (and work as context managers)."""
    stream = sys.stderr if file is None else file
    if _isatty(stream):
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable,
                    mininterval=0.5 if mininterval is None else mininterval, file=stream, **tqdm_kwargs)
    return LogProgress(total=total, initial=initial, desc=desc, unit=unit, disable=disable,
                       interval=30.0 if mininterval is None else mininterval, percent=percent)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LogProgress:
    """Progress as :mod:`logging` lines: one each ``interval`` seconds and each ``percent`` per cent of
    ``total`` (whichever comes first), and one at :meth:`close` unless the last line said it all."""

    def __init__(self, *, total: int, initial: int = 0, desc: str = "", unit: str = "it", disable: bool = False,
                 interval: float = 30.0, percent: float = 10.0, logger: logging.Logger = LOG, clock=time.monotonic):
        self.total, self.n, self.desc, self.unit = int(total), int(initial), desc, unit
        self.disable, self.interval, self.percent = disable, float(interval), float(percent)
        self.logger, self.clock = logger, clock
        self.postfix = ""
        self._start_n = self.n
        self._t0 = self._last_t = clock()
        self._logged_n = self.n  # nothing new to say yet
        self._next_pct = self._pct_mark(self.n)
        self._closed = False

    def _pct_mark(self, n: int) -> float:
        """The next multiple of ``percent`` above ``n``'s share of the total."""
        if self.total <= 0 or self.percent <= 0:
            return float("inf")
        return (int(100.0 * n / self.total / self.percent) + 1) * self.percent

    def update(self, n: int = 1) -> None:
        if self.disable or self._closed:
            return
        self.n += n
        now = self.clock()
        if (self.total > 0 and 100.0 * self.n / self.total >= self._next_pct) or now - self._last_t >= self.interval:
            self._log(now)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        """tqdm's ``set_postfix``: ``key=value`` pairs appended to the next lines."""
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={_fmt(v)}" for k, v in items.items())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable and self.n != self._logged_n:
            self._log(self.clock())

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def line(self, now: float) -> str:
        """The progress line at time ``now`` (of ``clock``)."""
        elapsed = max(now - self._t0, 0.0)
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{self.desc + ': ' if self.desc else ''}{self.n}"
        if self.total > 0:
            text += f"/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f}%)"
        else:
            text += f" {self.unit}"
        text += f", {rate:.3g} {self.unit}/s, {_clock(elapsed)} elapsed"
        if self.total > 0 and rate > 0 and self.n < self.total:
            text += f", {_clock((self.total - self.n) / rate)} left"
        return text + (f", {self.postfix}" if self.postfix else "")

    def _log(self, now: float) -> None:
        self.logger.info("%s", self.line(now))
        self._last_t, self._logged_n = now, self.n
        self._next_pct = self._pct_mark(self.n)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
