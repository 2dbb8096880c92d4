"""Exceptions raised by sidkit.

Every error a user can cause (a bad file, column, value or option) is a :class:`SidkitError`.
The CLI prints its message as one line and exits with code 2; library callers catch it like any
``ValueError``.
"""

from __future__ import annotations


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


class GateFailed(Exception):
    """A ``--fail-on`` gate tripped (exit code 1)."""

    exit_code = 1
