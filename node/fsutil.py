"""Small durable-file helpers shared by the WAL and the double-sign guard (POSIX)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a creation, rename or unlink in directory `path` durable; raises OSError on failure."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def take_flock(lock: Path, mode: int = 0o600) -> int:
    """An exclusive, non-blocking `flock` on `lock` (created if missing); returns its descriptor. Raises
    BlockingIOError, with nothing left open, when another process or descriptor holds it."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def release_flock(fd: int) -> None:
    """Unlock and close a descriptor from `take_flock` (an unlock error still closes it)."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
