"""Output that never destroys an input or leaves a half-written file, devices, and the error type for bad input."""

from __future__ import annotations

import contextlib
import os
import shutil
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


def check_not_overwriting(output: str | os.PathLike, *inputs: str | os.PathLike | None) -> None:
    """Refuse an output that would destroy an input: the same file, or (an output directory) one holding it.

    Inputs that are not existing paths (None, a preset name) cannot be destroyed and are passed over.

    Raises:
        InputError: naming both paths.
    """
    out = Path(output).resolve()
    for given in inputs:
        if given is None or not Path(given).exists():
            continue
        path = Path(given).resolve()
        if path == out or (out.is_dir() and path.is_relative_to(out)):
            raise InputError(f"the output {output} would overwrite the input {given}; choose another output")


def check_new_directory(path: str | os.PathLike) -> Path:
    """Refuse an output directory that exists with something in it, or cannot be created; returns the topmost
    directory that creating it makes (itself, or its first missing parent). Commands call it before their work,
    `new_directory` again when it creates the directory."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InputError(f"{path} already exists; remove it or choose another directory")
    created = path
    while not created.parent.exists():
        created = created.parent
    if not created.parent.is_dir() or not os.access(created.parent, os.W_OK):
        raise InputError(f"cannot create {path}: {created.parent} is not a writable directory")
    return created


@contextlib.contextmanager
def new_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Create the output directory ``path`` (absent or empty before; missing parents are made) for the block, and
    remove what it created if the block fails.

    Call it once the inputs are checked, so that a refused command leaves nothing behind.
    """
    path = Path(path)
    created = check_new_directory(path)
    existed = path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if not existed:
            shutil.rmtree(created, ignore_errors=True)
        raise


def resolve_device(name: str):
    """``--device`` -> a torch.device; an unknown name, or CUDA / MPS where there is none, is an InputError."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {name}: MPS is not available on this machine")
    return device
