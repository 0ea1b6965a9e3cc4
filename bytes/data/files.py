"""Any directory of files as byte data: the training data's config, listing, a deterministic split by file,
and reading into byte tensors.

Files are never split across train / validation / test: a held-out file is unseen as a whole. The split
depends only on each file's path relative to the root and the seed, so adding a file does not move the others.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from longseq.core.io import InputError

SPLITS = ("train", "val", "test")


@dataclass(kw_only=True)
class BytesDataConfig:
    """Training data (``bytelm train --data.*``): the files under a directory, split by file, cut into windows."""

    path: Path | None = None
    """A directory of files (any bytes, read recursively) or a single file. Required."""
    batch_size: int = 8
    """Windows per optimizer step (per device)."""
    seq_len: int | None = None
    """Bytes per training window (default: the model's context - 1, the most it predicts at once)."""
    val_fraction: float = 0.05
    """Share of the files held out for validation (never trained on)."""
    test_fraction: float = 0.05
    """Share of the files held out for testing (never trained on nor validated on)."""
    split_seed: int = 0
    """Seed of the split by file."""

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.seq_len is not None and self.seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {self.seq_len}")
        check_fractions(self.val_fraction, self.test_fraction)
        if self.split_seed < 0:
            raise ValueError(f"split_seed must be >= 0, got {self.split_seed}")


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Held-out shares of the files: each in [0, 1), together below 1 (NaN fails every comparison)."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError(f"val and test fractions must be >= 0 and sum below 1, got {val_fraction}, {test_fraction}")


def list_files(root: str | os.PathLike) -> list[Path]:
    """The regular files under ``root`` (recursively, sorted; symlinks not followed), or ``[root]`` for a file.

    Raises:
        InputError: the path does not exist or cannot be read, or holds no files.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(f"no such file or directory: {root}")
    if not os.access(root, os.R_OK | os.X_OK):
        raise InputError(f"cannot read directory {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    if not files:
        raise InputError(f"no files under {root}")
    return files


def split_files(
    files: list[Path], root: str | os.PathLike, *, val_fraction: float, test_fraction: float, seed: int = 0
) -> dict[str, list[Path]]:
    """Assign each file to "train", "val" or "test" by a hash of (seed, path relative to root).

    The fractions are of files, not bytes. A non-zero fraction gets at least one file when there are enough.
    """
    check_fractions(val_fraction, test_fraction)
    root = Path(root)

    def key(path: Path) -> str:
        relative = path.relative_to(root).as_posix() if path != root else path.name
        return hashlib.sha256(f"{seed}:{relative}".encode()).hexdigest()

    ordered = sorted(files, key=key)
    n = len(ordered)
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 and n >= 3 else 0
    n_test = max(1, round(test_fraction * n)) if test_fraction > 0 and n >= 3 else 0
    split = {
        "val": sorted(ordered[:n_val]),
        "test": sorted(ordered[n_val : n_val + n_test]),
        "train": sorted(ordered[n_val + n_test :]),
    }
    return split


def read_bytes(files: list[Path]) -> torch.Tensor:
    """The files' bytes, concatenated, as (n,) uint8. Empty files contribute nothing.

    Raises:
        InputError: a file cannot be read.
    """
    chunks = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise InputError(f"cannot read {path}: {err.strerror or err}") from None
        if data:
            chunks.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    if not chunks:
        return torch.zeros(0, dtype=torch.uint8)
    return torch.cat(chunks)


def read_file(path: str | os.PathLike) -> torch.Tensor:
    """One file's bytes as (n,) uint8; an empty file or an unreadable path is an `InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}" if not path.exists() else f"not a file: {path}")
    data = read_bytes([path])
    if data.numel() == 0:
        raise InputError(f"{path} is empty")
    return data
