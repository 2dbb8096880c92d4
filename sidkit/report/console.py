"""Safe terminal text: what every text summary (and every ``error:``/``warning:`` line) shares.

Catalog text, ids, user words and paths are untrusted wherever they are shown: :func:`safe`
escapes rich markup (``[/x]`` or ``[link=...]`` print as typed) and makes control characters
(terminal escape sequences, newlines) visible as ``\\x1b``-style escapes.
"""

from __future__ import annotations

import re
import sys
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def visible(text: Any) -> str:
    """``text`` with control characters shown as escapes (one line, no terminal sequences)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def safe(text: Any) -> str:
    """Untrusted text for a rich markup string or table cell: control characters made visible
    and markup escaped."""
    from rich.markup import escape

    return escape(visible(text))


def fmt(value: Any, spec: str, missing: str = "n/a") -> str:
    """``format(value, spec)``, or ``missing`` for None / NaN."""
    if value is None or (isinstance(value, float) and value != value):
        return missing
    return format(value, spec)


def summary_console(file=None, min_width: int = 0):
    """The rich console of a command's summary on stdout. Not a terminal (a pipe, a log file of a
    batch job): 200 columns (or ``$COLUMNS``), so tables and lines do not wrap at rich's default
    80; a terminal: its own width (at least ``min_width``)."""
    import os

    from rich.console import Console

    out = file or sys.stdout
    tty = hasattr(out, "isatty") and out.isatty()
    width = None
    if not tty:
        width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 200
    c = Console(file=out, highlight=False, soft_wrap=False, width=width)
    if min_width and c.width < min_width:
        c = Console(file=out, highlight=False, soft_wrap=False, width=min_width)
    return c
