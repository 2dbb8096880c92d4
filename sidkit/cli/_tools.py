"""What every sidkit command shares: the one-line error, strict JSON on stdout, the warning
lines and the shared options. Text is made safe by :mod:`sidkit.report.console`; the summaries
themselves are rendered by :mod:`sidkit.report.text`.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from sidkit.report.console import visible

JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout and nothing else.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars or summary.")
LogEveryOpt = typer.Option(None, "--log-every", min=0, help="When stderr is not a terminal: seconds between plain progress lines (0: none). [default: $SIDKIT_LOG_EVERY or 30]")


def print_warnings(warnings, quiet: bool = False) -> None:
    """``warning: ...`` lines on stderr (catalog text made visible), unless ``quiet``."""
    if quiet:
        return
    for w in warnings or []:
        typer.echo(f"warning: {visible(w)}", err=True)


def fail(err: BaseException) -> NoReturn:
    """Print a one-line error on stderr and exit with the error's code (2 bad input, 1 gate)."""
    msg = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
    typer.echo(f"error: {visible(msg)}", err=True)
    raise typer.Exit(getattr(err, "exit_code", 2))


def emit_json(obj: Any) -> None:
    """One strict JSON document on stdout (NaN and infinities as null)."""
    from sidkit.io.artifacts import dumps_json

    sys.stdout.write(dumps_json(obj, indent=2) + "\n")
    sys.stdout.flush()


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
