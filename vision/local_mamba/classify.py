"""Image classification training (Lightning, on `core.train`): a task, a datamodule over the offline image
sets of `vision.images`, and `train_classifier`, the driver the CLI and the benchmarks share."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from longseq.core.train import (
    OptimizerConfig,
    ResumableDataLoader,
    TrainerConfig,
    build_trainer,
    configure_optimizers,
    fit,
)
from longseq.vision.images import (
    ImageClassificationDataset,
    load_digits,
    load_fashion_mnist,
    pixel_stats,
    split_indices,
)


@dataclass(kw_only=True)
class ImageDataConfig:
    """Which images, how many, at what size."""

    dataset: Literal["fashion-mnist", "digits"] = "fashion-mnist"
    data_dir: str | None = None
    """The directory holding Fashion-MNIST's four IDX files (`vision.images.FASHION_MNIST_FILES`); not bundled."""
    image_size: int | None = None
    """Resize the images to this square size (None: as stored; 28 for Fashion-MNIST, 8 for digits)."""
    val_size: int = 5000
    """Training images held out for validation (fixed split)."""
    test_size: int = 360
    """digits only (no official test split): images held out for the test."""
    train_limit: int | None = None
    """Use only the first n training images (quick runs)."""
    batch_size: int = 64

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")


class ImageClassificationData(L.LightningDataModule):
    """Train / validation / test splits of one offline image set, normalised with the training statistics."""

    def __init__(self, config: ImageDataConfig, *, seed: int = 0):
        super().__init__()
        self.config = config
        self.seed = seed
        if config.dataset == "fashion-mnist":
            train_images, train_labels = load_fashion_mnist("train", config.data_dir)
            test_images, test_labels = load_fashion_mnist("test", config.data_dir)
        else:
            images, labels = load_digits()
            rest, test = split_indices(len(labels), config.test_size, seed=seed + 1)
            train_images, train_labels, test_images, test_labels = (
                images[rest],
                labels[rest],
                images[test],
                labels[test],
            )
        mean, std = pixel_stats(train_images)
        train_idx, val_idx = split_indices(len(train_labels), config.val_size, seed=seed)
        if config.train_limit is not None:
            train_idx = train_idx[: config.train_limit]
        full = ImageClassificationDataset(train_images, train_labels, mean=mean, std=std, size=config.image_size)
        self.train_set = Subset(full, train_idx.tolist())
        self.val_set = Subset(full, val_idx.tolist())
        self.test_set = ImageClassificationDataset(test_images, test_labels, mean=mean, std=std, size=config.image_size)
        self.num_classes = int(train_labels.max()) + 1
        self.image_shape = tuple(full.images.shape[1:])

    def train_dataloader(self) -> DataLoader:
        return ResumableDataLoader(
            self.train_set,
            batch_size=self.config.batch_size,
            seed=self.seed,
            num_replicas=self.trainer.world_size if self.trainer else 1,
            rank=self.trainer.global_rank if self.trainer else 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=256)


class ImageClassifierTask(L.LightningModule):
    """Cross-entropy on (images, labels) batches; accuracy logged for validation and test."""

    def __init__(self, model: nn.Module, *, optimizer: OptimizerConfig | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.model = model
        self.optimizer_config = optimizer if optimizer is not None else OptimizerConfig()
        self.label_smoothing = label_smoothing

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(-1) == labels).float().mean())
        return loss

    def _evaluate(self, batch, stage: str) -> None:
        images, labels = batch
        logits = self(images)
        self.log(f"{stage}/loss", F.cross_entropy(logits.float(), labels), prog_bar=True, sync_dist=True)
        self.log(f"{stage}/acc", (logits.argmax(-1) == labels).float().mean(), prog_bar=True, sync_dist=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> dict:
        return configure_optimizers(self.model, self.optimizer_config, self.trainer.estimated_stepping_batches)


def train_classifier(
    model: nn.Module,
    data: ImageClassificationData,
    *,
    trainer: TrainerConfig,
    optimizer: OptimizerConfig,
    label_smoothing: float = 0.0,
    resume: str | None = None,
) -> dict[str, float]:
    """Fit ``model`` on ``data``, then evaluate on the test split.

    Returns:
        test accuracy and loss, final validation accuracy, training wall time (s) and the parameter count.
    """
    task = ImageClassifierTask(model, optimizer=optimizer, label_smoothing=label_smoothing)
    lightning = build_trainer(trainer)
    start = time.perf_counter()
    fit(lightning, task, data, resume=resume)
    seconds = time.perf_counter() - start
    val = lightning.validate(task, datamodule=data, verbose=False)[0]
    test = lightning.test(task, datamodule=data, verbose=False)[0]
    return {
        "test_acc": float(test["test/acc"]),
        "test_loss": float(test["test/loss"]),
        "val_acc": float(val["val/acc"]),
        "train_seconds": seconds,
        "params": sum(p.numel() for p in model.parameters()),
    }
