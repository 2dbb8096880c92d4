"""The files of a model directory, the one reader of them, and the recovery of a killed swap.

Every name a model directory holds is defined here (the table is in :mod:`sidkit.model`), so is
the format version of ``sidkit.json`` and of KAE's slot registry. :class:`ModelDir` reads every
file relative to one directory handle; :func:`recover_dir` puts back a directory that a killed
fallback swap left aside. Validation of what is read: :mod:`sidkit.model.files`; the lock:
:mod:`sidkit.model.lock`; writing and loading a whole model: :mod:`sidkit.model.directory`.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from sidkit.errors import ModelError

META = "sidkit.json"
TENSORS = "model.safetensors"
CODES = "codes.parquet"
CODEBOOKS = "codebooks.parquet"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
TRAIN_LOG = "train_log.parquet"  # RQ-VAE
SLOTS = "slots.json"  # KAE: the slot registry, the one file changed in place (bind-slot / unbind-slot)
KAE_PLAN = "kae.toml"  # KAE: the plan

FORMAT_VERSION = 1  # sidkit.json's format_version
REGISTRY_FORMAT = 1  # slots.json's format
REFIT = "re-run 'sidkit fit' to rebuild the model"


def parse_json(raw: bytes, path: Path, fix: str = REFIT) -> Any:
    """Parse JSON bytes read from ``path``; ModelError when they are not valid UTF-8 JSON."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: not valid JSON ({str(e).splitlines()[0]}); {fix}") from None


class ModelDir:
    """A model directory opened for reading: every file is read relative to one directory handle,
    so a concurrent refit that swaps the directory cannot mix files of two fits."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:
            raise ModelError(f"{self.path}: model directory not found; pass the --out directory of 'sidkit fit'") from None
        except NotADirectoryError:
            raise ModelError(f"{self.path}: is a file, not a model directory; pass the --out directory of 'sidkit fit'") from None
        except OSError as e:
            raise ModelError(f"{self.path}: cannot open the model directory ({e.strerror})") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def _opener(self, name, flags):
        return os.open(name, flags, dir_fd=self._fd)

    def exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self._fd)
            return True
        except FileNotFoundError:
            return False

    def is_file(self, name: str) -> bool:
        """``name`` is a regular file (a symlink to one counts)."""
        try:
            return stat.S_ISREG(os.stat(name, dir_fd=self._fd).st_mode)
        except OSError:
            return False

    def open(self, name: str):
        """A binary file object of ``name`` inside the directory."""
        return open(name, "rb", opener=self._opener)

    def read_bytes(self, name: str, what: str = "model file", fix: str = REFIT, missing: str | None = None) -> bytes:
        """The bytes of ``name``; ModelError when it is missing (``missing``: that message) or unreadable."""
        try:
            with self.open(name) as f:
                return f.read()
        except FileNotFoundError:
            raise ModelError(missing or f"{self.path}: not a complete sidkit model directory ({name} is missing); {fix}") from None
        except OSError as e:
            raise ModelError(f"{self.path / name}: cannot read the {what} ({e.strerror}); {fix}") from None

    def read_json(self, name: str, what: str = "model file", fix: str = REFIT) -> Any:
        return parse_json(self.read_bytes(name, what, fix), self.path / name, fix)


def recover_dir(path: str | os.PathLike) -> bool:
    """Put back a model directory that a killed fallback swap left under a hidden ``.old`` name
    (only when ``path`` itself is missing). True when something was restored."""
    from sidkit.io.artifacts import clean_stale, stale_temps
    from sidkit.model.lock import model_lock

    path = Path(path)
    if os.path.lexists(path) or not any(p.name.endswith(".old") for p in stale_temps(path)):
        return False
    try:
        with model_lock(path, timeout=30):
            return any(p.name.endswith(".old") for p in clean_stale(path))
    except OSError:
        return False


def replace_file(model_dir: str | os.PathLike, name: str, obj: Any) -> None:
    """Replace one JSON file of an existing model directory atomically (temp file + ``os.replace``);
    the caller holds the model lock. Only KAE's ``slots.json`` changes this way."""
    from sidkit.io.artifacts import write_json_atomic

    write_json_atomic(Path(model_dir) / name, obj)
