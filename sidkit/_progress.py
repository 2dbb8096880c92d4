"""Progress on stderr: rich bars on a terminal, plain periodic log lines in batch jobs.

On a terminal the CLI draws one rich bar per stage (off with ``--quiet`` or ``--json``). When
stderr is not a terminal (a batch job, output piped to a file) it writes a plain line instead:
when a stage starts, at least every ``--log-every`` seconds (default 30) and when it ends, with
done/total, rate, ETA and the stage's current figures (off with ``--quiet``; never on stdout, so
``--json`` output stays one document). The library logs the same lines through the ``sidkit``
Python logger at INFO when the caller passes no progress callback (:func:`library_progress`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Callable, Iterator

LOG_EVERY = 30.0  # seconds between log lines of a running stage (SIDKIT_LOG_EVERY overrides)
logger = logging.getLogger("sidkit")

BAR_WIDTH = 24
ELAPSED_WIDTH = REMAINING_WIDTH = 7  # "0:00:00"


def fit_info(text: str, width: int, stage: str, total: int) -> str:
    """The metrics text cut to what a ``width``-column line leaves after the stage name, the bar,
    the step counter, the elapsed time and the ETA (those are never squeezed out; the metrics
    go first)."""
    fixed = len(stage) + BAR_WIDTH + 2 * len(str(total)) + 1 + ELAPSED_WIDTH + REMAINING_WIDTH + 5
    room = width - fixed - 1
    if room <= 1:
        return ""
    return text if len(text) <= room else text[: room - 1] + "…"


def _fmt_info(info: dict | None) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (info or {}).items())


def _hms(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class LogLines:
    """A progress callback ``(stage, done, total, info)`` that writes plain lines through ``emit``
    once a stage has run for ``every`` seconds, then at most one every ``every`` seconds, and the
    end (``done >= total``) of a stage that wrote a line. Work shorter than ``every`` writes
    nothing (a quick command, or one that fails on bad input, keeps stderr to its one line).
    ``clock`` is injectable for tests."""

    def __init__(self, emit: Callable[[str], None], every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic):
        self.emit, self.every, self.clock = emit, float(every), clock
        self.started: dict[str, tuple[float, int]] = {}
        self.last: dict[str, float] = {}
        self.ended: set[str] = set()
        self.wrote: set[str] = set()
        self.current: tuple | None = None  # the last update (stage, done, total, info)
        self.last_line = clock()  # when the last line was written (or this object made)

    def heartbeat(self) -> None:
        """Repeat the running stage's last state when nothing was written for ``every`` seconds
        (a stage whose steps are slower than the log period still shows it is alive)."""
        cur = self.current
        if cur is None or cur[0] in self.ended or self.clock() - self.last_line < self.every:
            return
        self.last[cur[0]] = -1e18  # due now
        self(*cur)

    def __call__(self, stage: str, done: int, total: int, info: dict | None = None) -> None:
        now = self.clock()
        self.current = (stage, done, total, info)
        if stage not in self.started:
            self.started[stage] = (now, done)
            self.last.setdefault(stage, now)
        end = total > 0 and done >= total
        if end and stage in self.ended:
            return
        wrote = stage in self.wrote
        due = now - self.last[stage] >= self.every
        if not (due or (end and wrote)):
            return
        self.last[stage] = self.last_line = now
        self.wrote.add(stage)
        if end:
            self.ended.add(stage)
        t0, d0 = self.started[stage]
        el = now - t0
        line = f"sidkit: {stage}: {done:,}/{total:,}" + (f" ({done / total:.0%})" if total else "")
        if el > 0 and done > d0:
            rate = (done - d0) / el
            line += f", {rate:.3g}/s, elapsed {_hms(el)}"
            if not end and total:
                line += f", ETA {_hms((total - done) / rate)}"
        elif end:
            line += f", elapsed {_hms(el)}"
        text = _fmt_info(info)
        self.emit(line + (f"  {text}" if text else ""))


def log_every(value: float | None = None) -> float:
    """Seconds between log lines: ``value`` (``--log-every``), else $SIDKIT_LOG_EVERY, else 30."""
    if value is not None:
        return float(value)
    try:
        return float(os.environ.get("SIDKIT_LOG_EVERY", LOG_EVERY))
    except ValueError:
        return LOG_EVERY


def library_progress(progress):
    """``progress`` itself, or when it is None and the ``sidkit`` logger logs INFO, a callback
    that logs plain progress lines through it (so ``sidkit.fit`` in a job or notebook shows
    progress once logging is configured)."""
    if progress is not None or not logger.isEnabledFor(logging.INFO):
        return progress
    return LogLines(logger.info, log_every())


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress_bar(enabled: bool, console=None, *, log: bool | None = None, every: float | None = None) -> Iterator:
    """Yield a callback ``(stage, done, total, info)`` that drives one rich task per stage on a
    terminal; when stderr is not a terminal, plain log lines (:class:`LogLines`) if ``log``
    (default: ``enabled``) and ``every`` (seconds, default :func:`log_every`) is above 0."""
    if console is None and not sys.stderr.isatty():
        period = log_every(every)
        if not ((enabled if log is None else log) and period > 0):
            yield None
            return
        lines = LogLines(_stderr_line, period)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(min(period, 5.0)):
                lines.heartbeat()

        t = threading.Thread(target=beat, name="sidkit-log", daemon=True)
        t.start()
        try:
            yield lines
        finally:
            stop.set()
            t.join(timeout=1.0)
        return
    if console is None and not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = console or Console(stderr=True)
    tasks: dict[str, int] = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=BAR_WIDTH), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}", markup=False),
                  console=console, transient=False, expand=False) as prog:

        def update(stage: str, done: int, total: int, info: dict | None = None) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total, info="")
            text = _fmt_info(info)
            kw = {"info": fit_info(text, console.width, stage, total)} if text else {}
            prog.update(tasks[stage], completed=done, total=total, **kw)

        yield update
