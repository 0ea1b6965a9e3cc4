"""File output that never leaves a half-written file, and the error type for bad user input."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


class InputError(ValueError):
    """Bad user input (a file, a flag, a sequence): reported by the CLIs as one line, exit status 2."""


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary name keeps the suffix (``.x.npz.tmp-123.npz``) so writers that add a suffix do not rename it.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {path}: directory {parent} is not writable")
    tmp = parent / f".{path.name}.tmp-{os.getpid()}{path.suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
