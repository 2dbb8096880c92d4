"""The ``sidkit`` command line: a thin Typer layer over the library (one call per command).

One module per command group, each parse -> one library call -> render: :mod:`.fit` (fit,
encode), :mod:`.audit`, :mod:`.export` (export, lookup), :mod:`.dedup`, :mod:`.eval`, :mod:`.kae`, :mod:`.info`."""

from __future__ import annotations

import typer

from sidkit import __version__
from sidkit.cli._tools import OneLineErrors

app = typer.Typer(
    cls=OneLineErrors,
    name="sidkit",
    help="Semantic IDs for item catalogs: fit tokenizers, encode items, audit and export SID tables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[default: 3]" must show as typed
)



def _version(value: bool) -> None:
    if value:
        typer.echo(f"sidkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit.")) -> None:
    """Semantic IDs for item catalogs."""


def _register_commands() -> None:
    from sidkit.cli.audit import audit_command
    from sidkit.cli.dedup import dedup_command
    from sidkit.cli.eval import eval_command
    from sidkit.cli.export import export_command, lookup_command
    from sidkit.cli.fit import encode_command, fit_command
    from sidkit.cli.info import info_command
    from sidkit.cli.kae import bind_slot_command, kae_plan_command, slots_command, unbind_slot_command

    app.command("fit")(fit_command)
    app.command("encode")(encode_command)
    app.command("audit")(audit_command)
    app.command("export")(export_command)
    app.command("lookup")(lookup_command)
    app.command("dedup")(dedup_command)
    app.command("eval")(eval_command)
    app.command("kae-plan")(kae_plan_command)
    app.command("bind-slot")(bind_slot_command)
    app.command("unbind-slot")(unbind_slot_command)
    app.command("slots")(slots_command)
    app.command("info")(info_command)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
