"""Fine-tuning a sequence classifier (classification, multi-label or regression head): a LightningModule and a
datamodule over labelled sequences."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from longseq.core.io import InputError
from longseq.core.train.optim import OptimizerConfig, configure_optimizers
from longseq.core.train.resume import ResumableDataLoader
from longseq.genomics.data.tables import LabelledSequences
from longseq.genomics.data.tokenizer import DNATokenizer, pad_batch, reverse_complement
from longseq.genomics.models.classifier import SequenceClassifier
from longseq.genomics.tasks.metrics import (
    accuracy,
    auprc,
    auroc,
    f1_macro,
    matthews_corrcoef,
    pearson,
    per_label,
    spearman,
)


class LabelledDataset(Dataset):
    """Tokenised sequences with labels; item i is (ids (l_i,) int64, label): a class index (int64 ()) or float
    targets (k,) for multi-label and regression tables."""

    def __init__(self, data: LabelledSequences, *, tokenizer: DNATokenizer, max_len: int | None, source: str):
        self.ids = []
        for row, seq in enumerate(data.sequences):
            if max_len is not None and len(seq) > max_len:
                raise InputError(f"{source}: sequence {row + 1} has {len(seq)} bases, more than the context {max_len}")
            self.ids.append(torch.from_numpy(tokenizer.encode(seq, name=f"{source}: sequence {row + 1}")))
        is_classes = all(isinstance(label, int) for label in data.labels)
        self.labels = torch.tensor(data.labels, dtype=torch.long if is_classes else torch.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ids[index], self.labels[index]


def collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> ids (b, l) right-padded, lengths (b,), labels (b,) class indices or (b, k) targets."""
    ids, lengths = pad_batch([ids for ids, _ in items])
    return ids, lengths, torch.stack([label for _, label in items])


class LabelledDataModule(L.LightningDataModule):
    """Shuffled, exactly resumable training batches and in-order validation batches."""

    def __init__(self, train: LabelledDataset, val: LabelledDataset | None = None, *, batch_size: int, seed: int = 0):
        super().__init__()
        if len(train) < batch_size:
            raise InputError(f"{len(train)} training sequences are fewer than one batch of {batch_size}")
        self.train, self.val = train, val
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> ResumableDataLoader:
        trainer = self.trainer
        return ResumableDataLoader(
            self.train,
            batch_size=self.batch_size,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
            collate_fn=collate,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val is None:
            return []
        return DataLoader(self.val, batch_size=self.batch_size, shuffle=False, collate_fn=collate)


class FinetuneTask(L.LightningModule):
    """A `SequenceClassifier` trained for its head's task, with the benchmarks' validation metrics over the whole
    validation set:

    - classification: cross-entropy; accuracy, MCC, macro F1, AUROC, AUPRC;
    - multilabel: binary cross-entropy per label; the mean over labels of AUROC and AUPRC (DeepSEA's figures;
      labels whose validation column holds one value are left out);
    - regression: mean squared error; Pearson and Spearman correlations (mean over targets).

    Args:
        rc_augment: train on the reverse complement of each sequence with probability 1/2 (Caduceus-Ph's recipe).
    """

    def __init__(
        self, model: SequenceClassifier, *, optimizer: OptimizerConfig | None = None, rc_augment: bool = False
    ):
        super().__init__()
        self.model = model
        self.task = model.config.task
        self.optimizer_config = optimizer or OptimizerConfig()
        self.rc_augment = rc_augment
        self._val_logits: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return F.cross_entropy(logits, labels)
        if self.task == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, labels)
        return F.mse_loss(logits, labels)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        ids, lengths, labels = batch
        if self.rc_augment:
            flip = torch.rand(len(ids), device=ids.device) < 0.5
            ids = torch.where(flip[:, None], reverse_complement(ids, lengths), ids)
        loss = self._loss(self.model(ids, lengths).float(), labels)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        ids, lengths, labels = batch
        logits = self.model(ids, lengths).float()
        self.log("val/loss", self._loss(logits, labels), prog_bar=True, sync_dist=True)
        self._val_logits.append(logits)
        self._val_labels.append(labels)

    def _gathered(self, parts: list[torch.Tensor]) -> torch.Tensor:
        local = torch.cat(parts)
        if self.trainer.world_size == 1:
            return local.cpu()
        return self.all_gather(local).flatten(0, 1).cpu()

    def on_validation_epoch_end(self) -> None:
        if not self._val_logits:
            return
        logits, labels = self._gathered(self._val_logits), self._gathered(self._val_labels)
        self._val_logits.clear()
        self._val_labels.clear()
        for name, value in validation_metrics(logits, labels, self.task).items():
            if not np.isnan(value):
                self.log(f"val/{name}", value, prog_bar=name in ("accuracy", "auroc", "pearson"), rank_zero_only=True)

    def configure_optimizers(self) -> dict:
        return configure_optimizers(self.model, self.optimizer_config, self.trainer.estimated_stepping_batches)


def validation_metrics(logits: torch.Tensor, labels: torch.Tensor, task: str) -> dict[str, float]:
    """The metrics of a task (see `FinetuneTask`) over a whole validation set; NaN where undefined."""
    if task == "classification":
        return {
            "accuracy": accuracy(logits, labels),
            "mcc": matthews_corrcoef(logits, labels),
            "f1": f1_macro(logits, labels),
            "auroc": auroc(logits, labels),
            "auprc": auprc(logits, labels),
        }
    if task == "multilabel":
        aurocs, auprcs = per_label(logits, labels)
        return {"auroc": _nanmean(aurocs), "auprc": _nanmean(auprcs)}
    columns = range(logits.shape[-1])
    return {
        "mse": float(F.mse_loss(logits, labels)),
        "pearson": _nanmean([pearson(logits[:, j], labels[:, j]) for j in columns]),
        "spearman": _nanmean([spearman(logits[:, j], labels[:, j]) for j in columns]),
    }


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if v == v]
    return sum(kept) / len(kept) if kept else float("nan")
