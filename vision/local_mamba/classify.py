"""Image classification training (Lightning, on `core.train`): a task, a datamodule over the offline image
sets of `vision.images`, and `train_classifier`, the driver the CLI and the benchmarks share."""

from __future__ import annotations

import time

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from longseq.core.io import InputError
from longseq.core.train import OptimizerConfig, ResumableDataLoader, configure_optimizers, fit
from longseq.vision.images import (
    ImageClassificationDataset,
    ImageDataConfig,
    load_digits,
    load_fashion_mnist,
    pixel_stats,
    split_indices,
)

"""The largest ``--data.image_size``: LocalVim-T at 1024 pixels already takes seconds per image on a CPU."""


class ImageClassificationData(L.LightningDataModule):
    """Train / validation / test splits of one offline image set, normalised with the training statistics.

    Raises:
        InputError: a split that leaves no training images or not one batch, or labels of a single class.
    """

    def __init__(self, config: ImageDataConfig, *, seed: int = 0):
        super().__init__()
        self.config = config
        self.seed = seed
        if config.dataset == "fashion-mnist":
            train_images, train_labels = load_fashion_mnist("train", config.data_dir)
            test_images, test_labels = load_fashion_mnist("test", config.data_dir)
        else:
            images, labels = load_digits()
            if config.test_size >= len(labels):
                raise InputError(
                    f"--data.test_size {config.test_size} leaves none of the {len(labels)} digits to train"
                )
            rest, test = split_indices(len(labels), config.test_size, seed=seed + 1)
            train_images, train_labels, test_images, test_labels = (
                images[rest],
                labels[rest],
                images[test],
                labels[test],
            )
        classes = int(train_labels.max()) + 1
        if len(train_labels.unique()) < 2:
            raise InputError(f"the training labels hold one class ({int(train_labels[0])}); a classifier needs two")
        if int(test_labels.max()) >= classes:
            raise InputError(f"the test labels go up to {int(test_labels.max())}; the training labels to {classes - 1}")
        if config.val_size >= len(train_labels):
            raise InputError(
                f"--data.val_size {config.val_size} leaves none of the {len(train_labels)} training images"
            )
        mean, std = pixel_stats(train_images)
        train_idx, val_idx = split_indices(len(train_labels), config.val_size, seed=seed)
        if config.train_limit:
            train_idx = train_idx[: config.train_limit]
        if len(train_idx) < config.batch_size:
            raise InputError(f"{len(train_idx)} training images are fewer than one batch of {config.batch_size}")
        full = ImageClassificationDataset(
            train_images, train_labels, mean=mean, std=std, size=config.image_size or None
        )
        self.train_set = Subset(full, train_idx.tolist())
        self.val_set = Subset(full, val_idx.tolist())
        self.test_set = ImageClassificationDataset(
            test_images, test_labels, mean=mean, std=std, size=config.image_size or None
        )
        self.num_classes = classes
        self.image_shape = full.image_shape

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
    trainer: L.Trainer,
    model: nn.Module,
    data: ImageClassificationData,
    *,
    optimizer: OptimizerConfig,
    label_smoothing: float = 0.0,
    resume: str | None = None,
) -> dict[str, float]:
    """Fit ``model`` on ``data`` with ``trainer`` (`core.train.build_trainer`: build it before the model, since it
    seeds everything), then evaluate on the test split.

    Returns:
        test accuracy and loss, final validation accuracy, training wall time (s) and the parameter count.
    """
    # Lightning keeps the mode a module arrives in, and loaded models come in eval mode (no drop path)
    task = ImageClassifierTask(model, optimizer=optimizer, label_smoothing=label_smoothing)
    start = time.perf_counter()
    fit(trainer, task, data, resume=resume)
    seconds = time.perf_counter() - start
    val = trainer.validate(task, datamodule=data, verbose=False)[0]
    test = trainer.test(task, datamodule=data, verbose=False)[0]
    return {
        "test_acc": float(test["test/acc"]),
        "test_loss": float(test["test/loss"]),
        "val_acc": float(val["val/acc"]),
        "train_seconds": seconds,
        "params": sum(p.numel() for p in model.parameters()),
    }
