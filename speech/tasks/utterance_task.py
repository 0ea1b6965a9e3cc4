"""What the tasks that train on utterance batches share (`speech.tasks.data.collate_utterances`): a dict of
named losses per batch, logged for training and validation, the total under "loss"."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from longseq.core.train import OptimizerConfig, configure_optimizers


class UtteranceTask(L.LightningModule):
    """Subclasses define ``losses(batch) -> {"loss": total, ...}``."""

    def __init__(self, model: nn.Module, *, optimizer: OptimizerConfig | None = None):
        super().__init__()
        self.model = model
        self.optimizer_config = optimizer if optimizer is not None else OptimizerConfig()

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=len(batch["text"]))
        return losses["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        losses = self.losses(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=len(batch["text"]))

    def configure_optimizers(self) -> dict:
        return configure_optimizers(self.model, self.optimizer_config, self.trainer.estimated_stepping_batches)
