"""Labelled images on disk: ImageFolders (what `vision train-classifier` reads through timm) and the offline sets
they can be made from.

- Fashion-MNIST (Zalando, MIT): 60k + 10k 28x28 grey images, 10 classes, from a directory the user gives that holds
  its four IDX files (`FASHION_MNIST_FILES`, from github.com/zalandoresearch/fashion-mnist, folder data/fashion).
- scikit-learn's digits: 1,797 8x8 grey images of handwritten digits (values 0..16), bundled with scikit-learn.

Images come out as uint8 tensors (n, h, w) with int64 labels; `write_image_folder` stores them as PNG files.
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


def write_image_folder(root: Path, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]) -> None:
    """Grey images (n, h, w) uint8 as ``root/<class>/<i>.png``; ``classes[label]`` names each folder."""
    from PIL import Image

    for name in classes:
        (root / folder_name(name)).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images.numpy(), labels.tolist())):
        Image.fromarray(image, mode="L").save(root / folder_name(classes[label]) / f"{i:05d}.png")


def folder_name(name: str) -> str:
    """A class name as a folder name (``T-shirt/top`` -> ``T-shirt-top``)."""
    return name.replace("/", "-").replace(" ", "-")


def make_image_folder(
    root: Path, source: Literal["digits", "fashion-mnist"], *, data_dir=None, val_size: int = 360, seed: int = 0
) -> dict[str, int]:
    """Write an offline image set as an ImageFolder with ``train/`` and ``val/`` splits; returns the image counts.

    digits: ``val_size`` images held out at random (``seed``); Fashion-MNIST: its own test split is ``val/``.
    """
    if source == "digits":
        images, labels = load_digits()
        train, val = split_indices(len(labels), val_size, seed=seed)
        splits = {"train": (images[train], labels[train]), "val": (images[val], labels[val])}
        classes = DIGITS_CLASSES
    else:
        splits = {
            "train": load_fashion_mnist("train", data_dir, flag="--data_dir"),
            "val": load_fashion_mnist("test", data_dir, flag="--data_dir"),
        }
        classes = FASHION_MNIST_CLASSES
    for split, (images, labels) in splits.items():
        write_image_folder(Path(root) / split, images, labels, classes)
    return {split: len(labels) for split, (_, labels) in splits.items()}


TRAIN_SPLITS = ("train", "training")
VAL_SPLITS = ("val", "validation", "valid", "eval", "evaluation", "test")


def search_split(root: Path, split: str) -> Path | None:
    """The folder of ``split`` under an ImageFolder ``root``: ``root/<split>`` or a synonym (train/training,
    val/validation/valid/eval/evaluation/test, as timm looks for them); ``root`` itself for ``""``; None if absent."""
    if not split:
        return Path(root)
    synonyms = TRAIN_SPLITS if split in TRAIN_SPLITS else VAL_SPLITS if split in VAL_SPLITS else ()
    for name in (split, *synonyms):
        if (Path(root) / name).is_dir():
            return Path(root) / name
    return None


def check_images(paths: list[str]) -> list[str]:
    """The paths among ``paths`` that PIL cannot decode (truncated or corrupt files)."""
    from PIL import Image

    bad = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
        except (OSError, SyntaxError, ValueError):
            bad.append(path)
    return bad


MAX_IMAGE_SIZE = 1024
"""The largest ``--data.img_size``: LocalVim-T at 1024 pixels already takes seconds per image on a CPU."""


@dataclass(kw_only=True)
class ImageDataConfig:
    """Which images (an ImageFolder, or a dataset timm's ``create_dataset`` names), and timm's augmentation and
    batching of them (``--data.*``)."""

    root: str | None = None
    """An ImageFolder: one folder of images per class, either directly or under train/ and val/ (validation/,
    test/) split folders; a named dataset reads its files from here. None: scikit-learn's digits (offline), written
    as an ImageFolder for the run (`vision make-image-folder` writes one to keep)."""
    dataset: str = ""
    """A timm dataset name instead of an ImageFolder ("torch/cifar10", "hfds/beans", ...), read from root and
    never downloaded; "": the ImageFolder at root."""
    train_split: str = "train"
    val_split: str = "val"
    """Validation images; an ImageFolder without this folder holds out val_fraction of its training images."""
    val_fraction: float = 0.1
    img_size: int | tuple[int, int] | None = None
    """Input size, a side or (h, w); None: the model's img_size."""
    mean: tuple[float, ...] | None = None
    """Normalisation (one value or one per channel); None: the model's (0.5 for grey images)."""
    std: tuple[float, ...] | None = None
    interpolation: str = ""
    """Resize interpolation (bilinear, bicubic, ...); "": the model's."""
    crop_pct: float | None = None
    """Evaluation centre crop fraction; None: the model's."""
    scale: tuple[float, float] = (0.08, 1.0)
    """RandomResizedCrop area range for training."""
    hflip: float = 0.5
    color_jitter: float = 0.4
    auto_augment: str | None = None
    """timm's AutoAugment / RandAugment policy string, e.g. rand-m9-mstd0.5 (None: none)."""
    re_prob: float = 0.0
    """Random erasing probability."""
    corrupt: Literal["skip", "refuse"] = "skip"
    """An image that does not decode: skipped (counted on stderr) or the whole run refused. Every image is decoded
    once up front to find them."""
    batch_size: int = 64
    num_workers: int = 0

    def __post_init__(self):
        if self.img_size is not None:
            sizes = (self.img_size,) * 2 if isinstance(self.img_size, int) else tuple(self.img_size)
            if len(sizes) != 2 or not all(1 <= s <= MAX_IMAGE_SIZE for s in sizes):
                raise ValueError(f"img_size must be a side or (h, w) in [1, {MAX_IMAGE_SIZE}], got {self.img_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {self.scale}")
        for name in ("hflip", "re_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.crop_pct is not None and not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must lie in (0, 1], got {self.crop_pct}")
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {self.batch_size}, {self.num_workers}")
