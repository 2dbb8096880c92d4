"""Exceptions raised by sidkit.

Every error a user can cause (a bad file, column, value or option) is a :class:`SidkitError`.
The CLI prints its message as one line and exits with code 2; library callers catch it like any
``ValueError``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

_STYLE = ["python"]


def opt(name: str, flag: str | None = None) -> str:
    """How an error message names the option ``name``: the keyword (``codebook_size``) for
    Python callers, the flag (``--codebook-size``, or ``flag`` when it is spelled otherwise)
    inside the CLI (:func:`cli_style`)."""
    if _STYLE[-1] == "cli":
        return flag or f"--{name.replace('_', '-')}"
    return name


@contextlib.contextmanager
def cli_style() -> Iterator[None]:
    """Name options as command-line flags in the error messages raised inside the block."""
    _STYLE.append("cli")
    try:
        yield
    finally:
        _STYLE.pop()


class SidkitError(ValueError):
    """Base class: bad input or usage. The message is one line naming what is wrong and the fix."""

    exit_code = 2


class InputFileError(SidkitError):
    """An input file is missing, unreadable, empty or not of the expected format."""


class SchemaError(SidkitError):
    """A column is missing or has the wrong type."""


class DataError(SidkitError):
    """Values are invalid: nulls, duplicates, NaN or inf, ragged lengths, out-of-range codes."""


class ConfigError(SidkitError):
    """An option or config-file value is invalid."""


class ModelError(SidkitError):
    """A model directory is missing, incomplete or incompatible with the input."""


class NotFittedError(SidkitError):
    """A tokenizer was used (encode, decode, save) before it was fitted."""


class GateFailed(Exception):
    """A ``--fail-on`` gate tripped (exit code 1)."""

    exit_code = 1
