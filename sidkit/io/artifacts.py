"""Crash-safe writes.

* :func:`atomic_path`: a file goes to a temp file beside it, then ``os.replace``.
* :func:`atomic_dir`: a model directory is built in a temp folder beside it and swapped in with
  ``renameat2(RENAME_EXCHANGE)`` where Linux has it, so at every instant the path holds a complete
  old or new directory. Elsewhere (other systems, file systems without the flag) the fallback moves
  the old directory aside and the new one in; a kill between those two renames leaves the old one
  under a hidden ``.old`` name, and the next sidkit run on that path (fit, encode, bind-slot)
  puts it back (:func:`clean_stale`; :func:`sidkit.model.layout.recover_dir` for the readers).
* Every directory swap runs under the lock of the directory (:func:`sidkit.model.lock.model_lock`,
  ``.NAME.lock`` beside it), the one ``fit`` and ``bind-slot`` take for a model directory.
* Every temp file or folder is held under an exclusive ``flock`` while its writer lives; the next
  write to the same path removes the ones whose writer died (``kill -9``) and never a live one.
* :func:`check_output` refuses an output path that is one of the command's inputs.
* :func:`dumps_json` writes strict JSON: NaN and infinities become ``null``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from sidkit.errors import opt
from sidkit.model.lock import model_lock

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: temp litter is never removed automatically
    fcntl = None

TEMP_KINDS = ("tmp", "stage", "old")


# ---------------------------------------------------------------------------------------------
# liveness of temp files and folders

def _hold(path: Path) -> int | None:
    """Take an exclusive flock on ``path`` (file or folder) for as long as the fd stays open.

    Returns the fd, or None when the path vanished before it was locked (a cleaner took it) or
    the platform has no flock."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:  # removed by a cleaner between creation and locking
        os.close(fd)
        return None
    return fd


def _release(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _temp_name(path: Path, kind: str) -> Path:
    """A fresh hidden name beside ``path``: ``.NAME.XXXXXXXX.kind`` (not created)."""
    parent = path.parent
    while True:
        cand = parent / f".{path.name}.{secrets.token_hex(4)}.{kind}"
        if not os.path.lexists(cand):
            return cand


def _new_temp_file(path: Path, kind: str = "tmp") -> tuple[Path, int | None]:
    """Create an empty held temp file beside ``path``."""
    while True:
        tmp = _temp_name(path, kind)
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue
        fd = _hold(tmp)
        if fd is not None or fcntl is None:
            return tmp, fd


def _new_temp_dir(path: Path, kind: str = "tmp") -> tuple[Path, int | None]:
    """Create an empty held temp folder beside ``path``."""
    while True:
        tmp = _temp_name(path, kind)
        try:
            os.mkdir(tmp, 0o700)
        except FileExistsError:
            continue
        fd = _hold(tmp)
        if fd is not None or fcntl is None:
            return tmp, fd


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def stale_temps(path: str | os.PathLike) -> list[Path]:
    """The hidden temp files and folders of ``path`` (``.NAME.XXXXXXXX.tmp|stage|old``)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    pat = re.compile(r"^\." + re.escape(path.name) + r"\.[A-Za-z0-9_]{8}\.(" + "|".join(TEMP_KINDS) + r")$")
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    return sorted(parent / n for n in names if pat.match(n))


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove what killed writers left beside ``path``; returns what was removed or restored.

    A temp whose writer still runs is held under flock and kept. An ``.old`` folder (the fallback
    swap's displaced model) is put back at ``path`` when ``path`` is missing. Callers that swap
    directories call this under :func:`~sidkit.model.lock.model_lock`."""
    if fcntl is None:  # pragma: no cover
        return []
    path = Path(path)
    done = []
    for p in stale_temps(path):
        if p.name.endswith(".old") and not os.path.lexists(path):
            with contextlib.suppress(OSError):
                os.rename(p, path)
                done.append(p)
                continue
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            _remove(p)
            done.append(p)
        finally:
            os.close(fd)
    return done


# ---------------------------------------------------------------------------------------------
# atomic files

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _parent(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        from sidkit.errors import InputFileError

        raise InputFileError(f"{path}: the folder {parent} does not exist; create it or write elsewhere")
    return parent


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a held temp path beside ``path``; on success it replaces ``path``, on error it is
    removed. (``suffix`` is accepted for compatibility; temp names always end in ``.tmp``.)"""
    path = Path(path)
    _parent(path)
    clean_stale(path)
    tmp, fd = _new_temp_file(path)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        _release(fd)


@contextlib.contextmanager
def stage_path(path: str | os.PathLike) -> Iterator[Path]:
    """A held scratch file beside ``path`` (``.NAME.XXXXXXXX.stage``), removed afterwards."""
    tmp, fd = _new_temp_file(Path(path), "stage")
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        _release(fd)


@contextlib.contextmanager
def scratch_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A held scratch folder beside ``path`` (``.NAME.XXXXXXXX.stage``), removed afterwards;
    one a killed run left is removed by the next writer of ``path``."""
    path = Path(path)
    _parent(path)
    clean_stale(path)
    tmp, fd = _new_temp_dir(path, "stage")
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _release(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, dumps_json(obj, indent=2) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (also numpy scalars and arrays) replaced by None."""
    import numpy as np

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return finite_json(obj.tolist())
    if isinstance(obj, Mapping):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def dumps_json(obj: Any, indent: int | None = None) -> str:
    """Strict JSON (NaN and infinities as null; numpy values and paths converted)."""
    return json.dumps(finite_json(obj), indent=indent, default=_json_default, allow_nan=False)


# ---------------------------------------------------------------------------------------------
# atomic directories

RENAME_EXCHANGE = 2


class _NoExchange(Exception):
    """The system or file system cannot exchange two paths atomically."""


def _exchange(a: Path, b: Path) -> None:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        raise _NoExchange("not Linux")
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        raise _NoExchange("no renameat2 in the C library")
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        if e in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise _NoExchange(os.strerror(e))
        raise OSError(e, os.strerror(e), str(b))


def _fsync_tree(root: Path) -> None:
    """Flush the files of a finished directory and the directory itself to disk."""
    for dirpath, _, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
    _fsync_dir(root)


def _fsync_dir(p: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def resolve_out_dir(path: str | os.PathLike) -> Path:
    """The directory an output path names: absolute, with a symlink to a folder followed (the
    folder is replaced, the user's link stays)."""
    p = Path(path)
    return p.resolve() if p.is_symlink() and p.is_dir() else Path(os.path.abspath(p))


def swap_in(tmp: Path, path: Path) -> None:
    """Move the complete directory ``tmp`` to ``path``, replacing what is there. Call under
    :func:`~sidkit.model.lock.model_lock`. Every instant leaves a complete directory at ``path``
    (exchange), except in the fallback, where a kill between its two renames leaves the old one
    at ``.NAME.*.old`` for :func:`clean_stale` / :func:`sidkit.model.layout.recover_dir` to put back."""
    parent = path.parent
    if not os.path.lexists(path):
        os.rename(tmp, path)
        _fsync_dir(parent)
        return
    if not path.is_dir() or path.is_symlink():
        from sidkit.errors import InputFileError

        raise InputFileError(f"{path}: exists and is not a directory; choose another {opt('out')}")
    back = _cwd_below(path)
    try:
        _exchange(tmp, path)
    except _NoExchange:
        old = _temp_name(path, "old")
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)
            raise
        _fsync_dir(parent)
        _chdir_back(back, path)
        shutil.rmtree(old, ignore_errors=True)
        return
    _fsync_dir(parent)
    _chdir_back(back, path)
    shutil.rmtree(tmp, ignore_errors=True)  # now the old directory


def _cwd_below(path: Path) -> Path | None:
    """The current directory when it is ``path`` or inside it (the swap moves it away)."""
    try:
        cwd = Path(os.getcwd())
    except OSError:
        return None
    return cwd if cwd == path or path in cwd.parents else None


def _chdir_back(cwd: Path | None, path: Path) -> None:
    """Re-enter the same path in the new directory (or the directory itself) after a swap."""
    if cwd is None:
        return
    for p in (cwd, path):
        try:
            os.chdir(p)
            return
        except OSError:
            continue


def ensure_parent(path: Path) -> None:
    """Create the folder that will hold the output directory ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from sidkit.errors import InputFileError

        raise InputFileError(f"{path.parent}: cannot create the output folder ({e.strerror}); choose another {opt('out')}") from None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, locked: bool = False) -> Iterator[Path]:
    """Build a directory in a held temp folder beside ``path`` and swap it in when the block
    succeeds (see :func:`swap_in`); an existing directory is left untouched when the block raises.

    The swap runs under :func:`~sidkit.model.lock.model_lock` (``locked=True``: the caller already holds it).
    Temp folders of killed runs are removed first."""
    path = resolve_out_dir(path)
    ensure_parent(path)
    if stale_temps(path):
        with model_lock(path):
            clean_stale(path)
    tmp, fd = _new_temp_dir(path)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        _fsync_tree(tmp)
        with contextlib.nullcontext() if locked else model_lock(path):
            swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _release(fd)


# ---------------------------------------------------------------------------------------------
# outputs that would destroy inputs

def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _inside(child: Path, folder: Path) -> bool:
    try:
        c, f = child.resolve(), folder.resolve()
    except OSError:
        return False
    return c != f and f in c.parents


def check_output(out: str | os.PathLike | None, option: str, inputs: Mapping[str, Any], *,
                 directory: bool = False, allowed: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse an output that would overwrite (or, for a ``directory`` output, delete) an input.

    ``inputs``: a label such as ``'ITEMS'`` or ``'--items'`` -> path (None entries are skipped;
    a model directory input also protects the files in it). ``allowed``: input paths the output
    may replace (a refit's own ``kae.toml``). Raises ConfigError naming both."""
    if out is None:
        return
    from sidkit.errors import ConfigError

    o = Path(out)
    keep = {Path(a).resolve() for a in allowed}
    for label, p in inputs.items():
        if p is None:
            continue
        p = Path(p)
        if p.resolve() in keep:
            continue
        if _same(o, p):
            what = "is the same path as" if directory else "is the same file as"
            raise ConfigError(f"{option} {o} {what} the input {label} {p}; writing it would destroy the input, so write the output elsewhere")
        if directory and _inside(p, o):
            raise ConfigError(f"{option} {o} would replace the folder that holds the input {label} {p}; move the input out of it or choose another {option}")
        if not directory and p.is_dir() and _inside(o, p):
            for f in ("codes.parquet", "sidkit.json", "model.safetensors", "slots.json", "codebooks.parquet"):
                if _same(o, p / f):
                    raise ConfigError(f"{option} {o} is the model's own {f} (input {label} {p}); write the output elsewhere")


def rows_table(rows: list[dict]):
    """An Arrow table of dict rows over the union of their keys (first-seen order); a key a row
    lacks is null there. (``pa.Table.from_pylist`` keeps only the first row's keys.)"""
    import pyarrow as pa

    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pa.table({k: [r.get(k) for r in rows] for k in keys})
