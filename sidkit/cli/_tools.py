"""What every sidkit command shares: the one-line error, strict JSON on stdout, safe terminal text.

Catalog text, ids, user words and paths are untrusted wherever they are shown: :func:`safe`
escapes rich markup (``[/x]`` or ``[link=...]`` print as typed) and makes control characters
(terminal escape sequences, newlines) visible as ``\\x1b``-style escapes.
"""

from __future__ import annotations

import re
import sys
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout and nothing else.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars or summary.")


def visible(text: Any) -> str:
    """``text`` with control characters shown as escapes (one line, no terminal sequences)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def print_warnings(warnings, quiet: bool = False) -> None:
    """``warning: ...`` lines on stderr (catalog text made visible), unless ``quiet``."""
    if quiet:
        return
    for w in warnings or []:
        typer.echo(f"warning: {visible(w)}", err=True)


def safe(text: Any) -> str:
    """Untrusted text for a rich markup string or table cell: control characters made visible
    and markup escaped."""
    from rich.markup import escape

    return escape(visible(text))


def fail(err: BaseException) -> NoReturn:
    """Print a one-line error on stderr and exit with the error's code (2 bad input, 1 gate)."""
    msg = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
    typer.echo(f"error: {visible(msg)}", err=True)
    raise typer.Exit(getattr(err, "exit_code", 2))


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


def emit_json(obj: Any) -> None:
    """One strict JSON document on stdout (NaN and infinities as null)."""
    from sidkit.io.artifacts import dumps_json

    sys.stdout.write(dumps_json(obj, indent=2) + "\n")
    sys.stdout.flush()


def fmt(value: Any, spec: str, missing: str = "n/a") -> str:
    """``format(value, spec)``, or ``missing`` for None / NaN."""
    if value is None or (isinstance(value, float) and value != value):
        return missing
    return format(value, spec)


class OneLineErrors(TyperGroup):
    """Usage errors (an unknown option, a value out of range) as one ``error: ...`` line and
    exit code 2, like every other sidkit error, instead of click's usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from sidkit.errors import cli_style

        if not standalone_mode:
            with cli_style():
                return super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        try:
            with cli_style():
                rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except Exception as e:  # click's exceptions, whichever click typer ships with
            name = type(e).__name__
            if name == "Abort":
                typer.echo("Aborted!", err=True)
                sys.exit(1)
            if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
                raise
            if name == "NoArgsIsHelpError":
                e.show()
                sys.exit(e.exit_code)
            msg = " ".join(str(e.format_message()).split()).rstrip(".")
            ctx = getattr(e, "ctx", None)
            hint = f"; see '{ctx.command_path} --help'" if ctx is not None and getattr(e, "exit_code", 1) == 2 else ""
            typer.echo(f"error: {visible(msg)}{hint}", err=True)
            sys.exit(e.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)
