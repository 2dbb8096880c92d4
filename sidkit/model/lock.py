"""The lock of a model directory: ``.NAME.lock`` beside it, flock'ed while held.

``fit`` takes it for the directory swap (and, for KAE, while it carries the slot bindings over);
``bind-slot`` and ``unbind-slot`` take it for each registry change; every other directory swap
(:func:`sidkit.io.artifacts.atomic_dir`: encode's folder of shards, export's stack folders) and
the removal of killed writers' temps beside a directory take the same lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Iterator

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the lock falls back to filelock
    fcntl = None

_HELD: dict[str, list] = {}  # lock path -> [fd, depth, thread lock] of the locks this process holds
_HELD_GUARD = threading.Lock()


def lock_path(model_dir: str | os.PathLike) -> Path:
    """``.NAME.lock`` beside the (resolved) model directory."""
    p = Path(model_dir).resolve()
    return p.parent / f".{p.name}.lock"


def _flock_acquire(lp: Path, deadline: float | None) -> int:
    """flock ``lp`` exclusively; the file is created if needed and must still be the file at
    ``lp`` once locked (a releasing holder unlinks it)."""
    while True:
        fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline is not None else 0))
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError from None
                    time.sleep(0.05)
            try:
                if os.stat(lp).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the holder before us removed the file: lock the new one


@contextlib.contextmanager
def model_lock(model_dir: str | os.PathLike, timeout: float = -1) -> Iterator[None]:
    """Hold the exclusive lock of a model directory (re-entrant within a thread).

    ``fit`` takes it for the directory swap (and, for KAE, while it carries the slot bindings
    over); ``bind-slot`` and ``unbind-slot`` take it for each registry change. The lock is the
    file ``.NAME.lock`` beside the directory, flock'ed while held and removed on release.
    Raises :class:`~sidkit.errors.ModelError` after ``timeout`` seconds (negative: wait)."""
    from sidkit.errors import ModelError

    lp = lock_path(model_dir)
    key = str(lp)
    with _HELD_GUARD:
        entry = _HELD.setdefault(key, [None, 0, threading.RLock()])
    tlock = entry[2]
    if not tlock.acquire(timeout=timeout if timeout >= 0 else -1):
        raise ModelError(f"{Path(model_dir)}: another sidkit task holds the model's lock {lp.name}; try again when it has finished")
    try:
        if entry[1] == 0:
            deadline = time.monotonic() + timeout if timeout >= 0 else None
            try:
                if fcntl is None:  # pragma: no cover - not POSIX
                    from filelock import FileLock

                    fl = FileLock(key)
                    fl.acquire(timeout=timeout)
                    entry[0] = fl
                else:
                    entry[0] = _flock_acquire(lp, deadline)
            except TimeoutError:
                raise ModelError(f"{Path(model_dir)}: another sidkit command (a fit or a bind-slot) has held the model's lock "
                                 f"{lp.name} for {timeout:.0f} s; try again when it has finished") from None
            except OSError as e:
                raise ModelError(f"{lp}: cannot create the model lock ({e.strerror}); the folder that holds the model must be writable") from None
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                held, entry[0] = entry[0], None
                if fcntl is None:  # pragma: no cover
                    held.release()
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(lp)  # still locked: waiters find the file gone and retry
                    os.close(held)
    finally:
        tlock.release()
