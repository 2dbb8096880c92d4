"""Rich progress bars for the CLI (on stderr; off with --quiet, --json or when stderr is no TTY)."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

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


@contextlib.contextmanager
def progress_bar(enabled: bool, console=None) -> Iterator:
    """Yield a callback ``(stage, done, total, info)`` that drives one rich task per stage."""
    if console is None and (not enabled or not sys.stderr.isatty()):
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
            text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (info or {}).items())
            kw = {"info": fit_info(text, console.width, stage, total)} if text else {}
            prog.update(tasks[stage], completed=done, total=total, **kw)

        yield update
