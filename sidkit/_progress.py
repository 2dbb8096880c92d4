"""Rich progress bars for the CLI (on stderr; off with --quiet, --json or when stderr is no TTY)."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator:
    """Yield a callback ``(stage, done, total, info)`` that drives one rich task per stage."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    tasks: dict[str, int] = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=False) as prog:

        def update(stage: str, done: int, total: int, info: dict | None = None) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total, info="")
            text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (info or {}).items())
            kw = {"info": text} if text else {}
            prog.update(tasks[stage], completed=done, total=total, **kw)

        yield update
