"""Labelled image sets that exist offline, for training and tests.

- Fashion-MNIST (Zalando, MIT): 60k + 10k 28x28 grey images, 10 classes, from a directory the user gives that holds
  its four IDX files (`FASHION_MNIST_FILES`, from github.com/zalandoresearch/fashion-mnist, folder data/fashion).
- scikit-learn's digits: 1,797 8x8 grey images of handwritten digits (values 0..16), for tiny tests.

Images come out as uint8 tensors (n, h, w) with int64 labels; `ImageClassificationDataset` normalises them.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from longseq.core.io import InputError

FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGITS_CLASSES = tuple(str(i) for i in range(10))

_IDX_TYPES = {0x08: np.uint8}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (MNIST format, optionally gzipped) as a numpy array; only unsigned-byte data."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such IDX file: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise InputError(f"cannot read {path}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise InputError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        raise InputError(f"{path}: header says {shape}, the file holds {data.size} values (truncated?)")
    return data.reshape(shape)


def load_fashion_mnist(
    split: Literal["train", "test"], root: str | os.PathLike | None, *, flag: str = "--data.data_dir"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST images (n, 28, 28) uint8 and labels (n,) int64 from ``root``, the directory holding its IDX files.

    ``flag`` is the command-line option that sets ``root``: the error for missing files says to pass it.
    """
    prefix = "train" if split == "train" else "t10k"
    images_path = None if root is None else Path(root) / f"{prefix}-images-idx3-ubyte.gz"
    if images_path is None or not images_path.is_file():
        where = "is not bundled" if root is None else f"not found in {root}"
        raise InputError(
            f"Fashion-MNIST {where}: download its four IDX files ({', '.join(FASHION_MNIST_FILES)}) from "
            f"github.com/zalandoresearch/fashion-mnist (folder data/fashion) into a directory and pass it with {flag}"
        )
    root = Path(root)
    images = read_idx(images_path)
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise InputError(f"{root}: images {images.shape} and labels {labels.shape} do not match")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as uint8 images (1797, 8, 8) (0..16 scaled to 0..255) and labels (1797,)."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = np.clip(np.round(digits.images * 255.0 / 16.0), 0, 255).astype(np.uint8)
    return torch.from_numpy(images), torch.from_numpy(digits.target.astype(np.int64))


def split_indices(n: int, holdout: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random split of range(n) into (n - holdout, holdout) indices."""
    if not 0 <= holdout < n:
        raise InputError(f"cannot hold out {holdout} of {n} examples")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[holdout:], order[:holdout]


class ImageClassificationDataset(Dataset):
    """Images (n, h, w) or (n, c, h, w) uint8 + labels -> normalised float (c, size, size) and the label.

    Each item is resized (bilinear) when it is read, so a large ``size`` costs no memory up front; the statistics
    are the ones given (the training set's), so train and test images are normalised alike.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, mean: float, std: float, size: int | None = None):
        if images.dim() == 3:
            images = images[:, None]
        if images.dim() != 4 or len(images) != len(labels):
            raise InputError(f"expected images (n, [c,] h, w) and n labels; got {tuple(images.shape)}, {len(labels)}")
        self.images = images
        self.labels = labels.long()
        self.mean, self.std = mean, std
        self.size = tuple(images.shape[-2:]) if size is None else (size, size)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(c, h, w) of an item."""
        return (self.images.shape[1], *self.size)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[index].float() / 255.0
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False)[0]
        return (x - self.mean) / self.std, self.labels[index]


def pixel_stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of uint8 images scaled to [0, 1]."""
    x = images.float() / 255.0
    return float(x.mean()), float(x.std())


MAX_IMAGE_SIZE = 1024


@dataclass(kw_only=True)
class ImageDataConfig:
    """Which images, how many, at what size."""

    dataset: Literal["fashion-mnist", "digits"] = "fashion-mnist"
    data_dir: str | None = None
    """The directory holding Fashion-MNIST's four IDX files (`vision.images.FASHION_MNIST_FILES`); not bundled."""
    image_size: int = 0
    """Resize the images to this square size (0: as stored, 28 for Fashion-MNIST and 8 for digits)."""
    val_size: int = 5000
    """Training images held out for validation (fixed split)."""
    test_size: int = 360
    """digits only (no official test split): images held out for the test."""
    train_limit: int = 0
    """Use only the first n training images (quick runs; 0: all)."""
    batch_size: int = 64

    def __post_init__(self):
        if self.dataset not in ("fashion-mnist", "digits"):
            raise ValueError(f"dataset must be fashion-mnist or digits, got {self.dataset!r}")
        if not 0 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ValueError(f"image_size must lie in [0, {MAX_IMAGE_SIZE}] (0: as stored), got {self.image_size}")
        for name in ("val_size", "test_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_limit < 0:
            raise ValueError(f"train_limit must be >= 0 (0: all), got {self.train_limit}")
