"""Typer command ``sidkit info`` (registered in :mod:`sidkit.cli`): one screen about a model directory."""

from __future__ import annotations

from pathlib import Path

import typer

from sidkit.cli._tools import JsonOpt, emit_json, fail
from sidkit.errors import SidkitError


def info_command(
    model: Path = typer.Argument(..., help="Model directory written by 'sidkit fit'."),
    as_json: bool = JsonOpt,
) -> None:
    """Show a model: method, levels and sizes, items, collision rate, how and when it was fitted, KAE slots, files."""
    from sidkit.model.directory import model_info
    from sidkit.report.text import print_model_info

    try:
        info = model_info(model)
    except SidkitError as e:
        fail(e)
    if as_json:
        emit_json(info)
    else:
        print_model_info(info)
