"""Fine-tuning for sequence classification: a LightningModule and a datamodule over labelled sequences."""

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
from longseq.genomics.tasks.metrics import accuracy, auroc, matthews_corrcoef


class LabelledDataset(Dataset):
    """Tokenised sequences with labels; item i is (ids (l_i,) int64, label)."""

    def __init__(self, data: LabelledSequences, *, tokenizer: DNATokenizer, max_len: int | None, source: str):
        self.ids = []
        for row, seq in enumerate(data.sequences):
            if max_len is not None and len(seq) > max_len:
                raise InputError(f"{source}: sequence {row + 1} has {len(seq)} bases, more than the context {max_len}")
            self.ids.append(torch.from_numpy(tokenizer.encode(seq, name=f"{source}: sequence {row + 1}")))
        self.labels = torch.tensor(data.labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.ids[index], int(self.labels[index])


def collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> ids (b, l) right-padded, lengths (b,), labels (b,)."""
    ids, lengths = pad_batch([ids for ids, _ in items])
    return ids, lengths, torch.tensor([label for _, label in items], dtype=torch.long)


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


class ClassificationTask(L.LightningModule):
    """Cross-entropy on a `SequenceClassifier`; validation logs accuracy, MCC and AUROC over the whole set.

    Args:
        rc_augment: train on the reverse complement of each sequence with probability 1/2 (Caduceus-Ph's recipe).
    """

    def __init__(
        self, model: SequenceClassifier, *, optimizer: OptimizerConfig | None = None, rc_augment: bool = False
    ):
        super().__init__()
        self.model = model
        self.optimizer_config = optimizer or OptimizerConfig()
        self.rc_augment = rc_augment
        self._val_logits: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        ids, lengths, labels = batch
        if self.rc_augment:
            flip = torch.rand(len(ids), device=ids.device) < 0.5
            ids = torch.where(flip[:, None], reverse_complement(ids, lengths), ids)
        loss = F.cross_entropy(self.model(ids, lengths).float(), labels)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        ids, lengths, labels = batch
        logits = self.model(ids, lengths).float()
        self.log("val/loss", F.cross_entropy(logits, labels), prog_bar=True, sync_dist=True)
        self._val_logits.append(logits)
        self._val_labels.append(labels)

    def on_validation_epoch_end(self) -> None:
        if not self._val_logits:
            return
        logits = (
            self.all_gather(torch.cat(self._val_logits)).flatten(0, -2)
            if self.trainer.world_size > 1
            else torch.cat(self._val_logits)
        )
        labels = (
            self.all_gather(torch.cat(self._val_labels)).flatten()
            if self.trainer.world_size > 1
            else torch.cat(self._val_labels)
        )
        self._val_logits.clear()
        self._val_labels.clear()
        logits, labels = logits.cpu(), labels.cpu()
        self.log("val/accuracy", accuracy(logits, labels), prog_bar=True, rank_zero_only=True)
        self.log("val/mcc", matthews_corrcoef(logits, labels), rank_zero_only=True)
        value = auroc(logits, labels)
        if not np.isnan(value):
            self.log("val/auroc", value, rank_zero_only=True)

    def configure_optimizers(self) -> dict:
        return configure_optimizers(self.model, self.optimizer_config, self.trainer.estimated_stepping_batches)
