"""Image classification with timm's data machinery inside our Lightning loop.

- Data (`ImageFolderData`): ``timm.data.create_dataset`` (an ImageFolder, or any dataset name it takes, read from
  local files), ``create_transform`` from ``resolve_data_config`` (the model's input size and statistics, or the
  flags'), augmentation seeded by (seed, epoch, index) so that a resumed run draws what an uninterrupted one does.
- Task (`ImageClassifierTask`): ``timm.data.Mixup`` (Mixup / CutMix), ``timm.loss`` (soft-target or
  label-smoothing cross-entropy), ``timm.utils.ModelEmaV3`` (EMA weights evaluated and saved); drop path is the
  model's own; AMP is ``--trainer.precision``.
- `evaluate`: top-1 / top-5 and the confusion matrix of a model over a split.

``preprocess.json`` beside a trained model records its classes and data config, so that evaluation reads images
the way training did.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from timm.data import Mixup, create_dataset, create_transform, resolve_data_config
from timm.data.readers.reader_image_folder import find_images_and_targets
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from longseq.core.io import InputError
from longseq.core.train import OptimizerConfig, ResumableDataLoader, configure_optimizers, fit
from longseq.vision.images import ImageDataConfig, check_images, search_split

PREPROCESS_NAME = "preprocess.json"
GREY_MODES = ("1", "L", "I", "I;16", "F")


@dataclass
class Preprocess:
    """How a model reads images: its classes (index order) and timm's data config (input_size, mean, std,
    interpolation, crop_pct, crop_mode); ``grey``: images are read as one channel."""

    classes: list[str]
    data_config: dict
    grey: bool

    def save(self, directory: Path) -> None:
        (Path(directory) / PREPROCESS_NAME).write_text(json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Preprocess | None:
        path = Path(directory) / PREPROCESS_NAME
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
            return cls(classes=list(raw["classes"]), data_config=dict(raw["data_config"]), grey=bool(raw["grey"]))
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path} is not a preprocess record ({err})") from None


class SeededAugmentation(Dataset):
    """A dataset whose random transform draws from (seed, epoch, index) alone: the global generators (python,
    numpy, torch) are seeded for the item and restored after, so an item is the same after a restart.

    ``epoch`` is set by `ImageClassifierTask` at the start of each training epoch.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item_seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed)
            random.seed(item_seed)
            np.random.seed(item_seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(python_state)
                np.random.set_state(numpy_state)


def folder_classes(root: Path, class_map: dict[str, int] | None = None) -> tuple[list[tuple[str, int]], list[str]]:
    """An ImageFolder's (path, class index) samples and class names (timm's natural order unless ``class_map``).

    Raises:
        InputError: no images, fewer than two classes (training), or classes ``class_map`` does not know.
    """
    samples, found = find_images_and_targets(str(root), class_to_idx=None)
    if not samples:
        raise InputError(f"{root} holds no images (an ImageFolder: one sub-folder of images per class)")
    if class_map is None:
        if len(found) < 2 or "" in found:
            raise InputError(
                f"{root} holds {len(found)} class folder(s) ({', '.join(found) or 'images at the top'}); "
                "a classifier needs two or more"
            )
        return samples, list(found)
    unknown = sorted(set(found) - set(class_map))
    if unknown:
        raise InputError(f"{root}: classes the model was not trained on: {', '.join(unknown[:5])}")
    samples, _ = find_images_and_targets(str(root), class_to_idx=class_map)
    return samples, sorted(class_map, key=class_map.get)


def open_split(config: ImageDataConfig, root: Path | None, split: str, *, class_map=None, grey=None, **kwargs):
    """One split as a timm dataset (no transform yet), with its class names and whether it is grey.

    An ImageFolder split is ``root/<split>`` (or timm's synonyms: train/training, val/validation/...); corrupt
    images are skipped (``config.corrupt == "skip"``, counted on stderr) or refused. A named timm dataset reads
    ``split`` from ``root`` and never downloads.

    Returns:
        (dataset, classes, grey, skipped) or None when an ImageFolder has no such split folder.
    """
    import sys

    if config.dataset:
        try:
            dataset = create_dataset(config.dataset, root=str(root), split=split, download=False, **kwargs)
        except Exception as err:  # timm and the libraries behind it raise many kinds for a missing local dataset
            raise InputError(f"timm cannot open dataset {config.dataset!r} split {split!r} at {root}: {err}") from None
        classes = getattr(dataset, "classes", None) or [str(i) for i in range(_max_label(dataset) + 1)]
        if grey is None:  # as the first image comes (torchvision's MNIST gives grey PIL images)
            grey = getattr(dataset[0][0], "mode", "RGB") in GREY_MODES
        return dataset, list(classes), grey, 0
    folder = search_split(root, split)
    if folder is None:
        return None
    samples, classes = folder_classes(folder, class_map)
    bad = check_images([path for path, _ in samples])
    if bad and config.corrupt == "refuse":
        raise InputError(f"{folder}: {len(bad)} unreadable image(s), e.g. {bad[0]} (--data.corrupt skip skips them)")
    if bad:
        print(f"{folder}: skipped {len(bad)} unreadable image(s), e.g. {bad[0]}", file=sys.stderr)
    if grey is None:
        from PIL import Image

        with Image.open(samples[0][0]) as first:
            grey = first.mode in GREY_MODES
    class_map = {c: i for i, c in enumerate(classes)}
    dataset = create_dataset(
        "", root=str(folder), search_split=False, class_map=class_map, input_img_mode="L" if grey else "RGB", **kwargs
    )
    keep = set(bad)
    dataset.reader.samples = [s for s in dataset.reader.samples if s[0] not in keep]
    return dataset, classes, grey, len(bad)


def _max_label(dataset) -> int:
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise InputError("the timm dataset has neither classes nor targets; use an ImageFolder")
    return int(max(targets))


class ImageFolderData(L.LightningDataModule):
    """Training and validation splits through timm, transformed as ``preprocess`` says (built by `prepare`).

    Raises:
        InputError: an unusable folder (see `folder_classes`), classes that differ between the splits, or fewer
            training images than one batch.
    """

    def __init__(self, config: ImageDataConfig, root: Path | None, *, seed: int = 0):
        super().__init__()
        self.config, self.root, self.seed = config, root, seed
        opened = open_split(config, root, config.train_split)
        if opened is None:
            opened = open_split(config, root, "")  # class folders at the top: no split folders
        self.train_raw, self.classes, self.grey, _ = opened
        class_map = {c: i for i, c in enumerate(self.classes)}
        val = open_split(config, root, config.val_split, class_map=class_map, grey=self.grey)
        same_folder = not config.dataset and search_split(root, config.val_split) == search_split(
            root, config.train_split
        )
        if val is None or same_folder:
            n = len(self.train_raw)
            held = max(1, round(config.val_fraction * n))
            if held >= n:
                raise InputError(f"--data.val_fraction {config.val_fraction} leaves none of the {n} training images")
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
            self.train_idx, self.val_idx, self.val_raw = order[held:], order[:held], None
        else:
            self.val_raw = val[0]
            self.train_idx = self.val_idx = None
        n_train = len(self.train_raw) if self.train_idx is None else len(self.train_idx)
        if n_train < config.batch_size:
            raise InputError(f"{n_train} training images are fewer than one batch of {config.batch_size}")
        self.preprocess: Preprocess | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return 1 if self.grey else 3

    def prepare(self, model: nn.Module) -> Preprocess:
        """Resolve the data config against ``model`` (its input size and statistics unless the flags set them)
        and build the transforms."""
        import copy

        c = self.config
        args = {
            "in_chans": self.in_chans,
            "mean": c.mean,
            "std": c.std,
            "crop_pct": c.crop_pct,
            "interpolation": c.interpolation,
        }
        if c.img_size is not None:
            args["input_size"] = (self.in_chans, *_pair(c.img_size))
        else:
            args["input_size"] = (self.in_chans, *_pair(getattr(model.config, "img_size", 224)))
        if self.grey and c.mean is None:  # a model's RGB statistics do not fit one channel
            args["mean"], args["std"] = (0.5,), (0.5,)
        data_config = resolve_data_config(args, model=model)
        self.preprocess = Preprocess(classes=list(self.classes), data_config=data_config, grey=self.grey)
        train_tf = create_transform(
            **data_config,
            is_training=True,
            scale=c.scale,
            hflip=c.hflip,
            color_jitter=c.color_jitter,
            auto_augment=c.auto_augment,
            re_prob=c.re_prob,
        )
        eval_tf = create_transform(**data_config, is_training=False)
        train = self.train_raw
        if self.val_raw is None:
            val = copy.copy(self.train_raw)  # the same files read with the evaluation transform
            train, val = Subset(train, self.train_idx), Subset(val, self.val_idx)
            val.dataset.transform = eval_tf
        else:
            val = self.val_raw
            val.transform = eval_tf
        self.train_raw.transform = train_tf
        self.train_set, self.val_set = SeededAugmentation(train, self.seed), val
        return self.preprocess

    def train_dataloader(self) -> DataLoader:
        return ResumableDataLoader(
            self.train_set,
            batch_size=self.config.batch_size,
            seed=self.seed,
            num_replicas=self.trainer.world_size if self.trainer else 1,
            rank=self.trainer.global_rank if self.trainer else 0,
            num_workers=self.config.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.config.batch_size, num_workers=self.config.num_workers)


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@dataclass(kw_only=True)
class Regularization:
    """timm's training regularizers (`vision train-classifier` flags)."""

    label_smoothing: float = 0.0
    mixup: float = 0.0
    """Mixup alpha (0: off)."""
    cutmix: float = 0.0
    """CutMix alpha (0: off); with mixup both, switching per batch."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of the weights (timm ModelEmaV3), evaluated and saved (0: off)."""

    def __post_init__(self):
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if not (self.mixup >= 0 and self.cutmix >= 0):
            raise ValueError(f"mixup and cutmix must be >= 0, got {self.mixup} and {self.cutmix}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")


class ImageClassifierTask(L.LightningModule):
    """timm's training recipe on (images, labels) batches; validation accuracy on the EMA weights when kept."""

    def __init__(self, model: nn.Module, num_classes: int, *, optimizer: OptimizerConfig, reg: Regularization):
        super().__init__()
        self.model = model
        self.optimizer_config = optimizer
        self.mixup = None
        if reg.mixup > 0 or reg.cutmix > 0:
            self.mixup = Mixup(
                mixup_alpha=reg.mixup,
                cutmix_alpha=reg.cutmix,
                label_smoothing=reg.label_smoothing,
                num_classes=num_classes,
            )
            self.train_loss = SoftTargetCrossEntropy()
        elif reg.label_smoothing > 0:
            self.train_loss = LabelSmoothingCrossEntropy(smoothing=reg.label_smoothing)
        else:
            self.train_loss = nn.CrossEntropyLoss()
        self.ema = ModelEmaV3(model, decay=reg.ema_decay) if reg.ema_decay > 0 else None

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are evaluated and saved: the EMA's when kept."""
        return self.model if self.ema is None else self.ema.module

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        if isinstance(getattr(loader, "dataset", None), SeededAugmentation):
            loader.dataset.epoch = self.current_epoch

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        targets = labels
        if self.mixup is not None:
            images, targets = self.mixup(images, labels)
        logits = self.model(images)
        loss = self.train_loss(logits.float(), targets)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(-1) == labels).float().mean())
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self.evaluated(images).float()
        self.log("val/loss", nn.functional.cross_entropy(logits, labels), prog_bar=True, sync_dist=True)
        self.log("val/acc", (logits.argmax(-1) == labels).float().mean(), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> dict:
        return configure_optimizers(self.model, self.optimizer_config, self.trainer.estimated_stepping_batches)


def train_classifier(
    trainer: L.Trainer,
    model: nn.Module,
    data: ImageFolderData,
    *,
    optimizer: OptimizerConfig,
    reg: Regularization,
    resume: str | None = None,
) -> tuple[nn.Module, dict[str, float]]:
    """Fit ``model`` on ``data`` (`ImageFolderData.prepare` done) with ``trainer`` (`core.train.build_trainer`:
    build it before the model, since it seeds everything).

    Returns:
        the trained weights (the EMA's when kept) and metrics: final validation accuracy and loss, training wall
        time (s), parameter count.
    """
    if (reg.mixup > 0 or reg.cutmix > 0) and data.config.batch_size % 2:
        raise InputError(
            f"Mixup / CutMix mix pairs of images: --data.batch_size must be even, not {data.config.batch_size}"
        )
    task = ImageClassifierTask(model, data.num_classes, optimizer=optimizer, reg=reg)
    start = time.perf_counter()
    fit(trainer, task, data, resume=resume)
    seconds = time.perf_counter() - start
    val = trainer.validate(task, datamodule=data, verbose=False)[0]
    return task.evaluated, {
        "val_acc": float(val["val/acc"]),
        "val_loss": float(val["val/loss"]),
        "train_seconds": seconds,
        "params": sum(p.numel() for p in model.parameters()),
    }


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, num_classes: int, *, device: torch.device) -> dict:
    """Top-1 / top-5 accuracy and the confusion matrix (rows: true class, columns: predicted) of ``model``.

    Shows a progress bar on a terminal.
    """
    from tqdm.auto import tqdm

    model.eval().to(device)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    top5_hits, n = 0, 0
    k = min(5, num_classes)
    for images, labels in tqdm(loader, desc="evaluating", unit="batch", disable=None):
        logits = model(images.to(device)).float().cpu()
        top = logits.topk(k, dim=-1).indices
        top5_hits += int((top == labels[:, None]).any(-1).sum())
        confusion += torch.bincount(labels * num_classes + top[:, 0], minlength=num_classes**2).view(
            num_classes, num_classes
        )
        n += len(labels)
    correct = confusion.diag()
    per_class = (correct / confusion.sum(1).clamp(min=1)).tolist()
    return {
        "images": n,
        "top1": float(correct.sum()) / max(n, 1),
        f"top{k}": top5_hits / max(n, 1),
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
    }


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    """The confusion matrix as a PNG: counts in each cell, rows the true class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    size = 2 + 0.45 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if count > matrix.max() / 2 else "black",
        )
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
