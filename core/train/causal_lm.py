"""Next-token training for any causal language model whose call on ``input_ids`` (b, l) returns logits (b, l, v)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.train.optim import OptimizerConfig, configure_optimizers


class CausalLMTask(L.LightningModule):
    """Cross-entropy of the next token. Batches are ``(input_ids, targets)``, both (b, l) int64; a target of
    ``ignore_index`` (padding, prompts) does not count.

    Domains reuse it as is or subclass it (another loss, extra metrics); the model stays a plain ``nn.Module``
    reachable as ``task.model``, so it is saved with its own ``save_pretrained`` after training.
    """

    def __init__(self, model: nn.Module, *, optimizer: OptimizerConfig | None = None, ignore_index: int = -100):
        super().__init__()
        self.model = model
        self.optimizer_config = optimizer if optimizer is not None else OptimizerConfig()
        self.ignore_index = ignore_index

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (b, l) -> logits (b, l, v)."""
        return self.model(input_ids)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        input_ids, targets = batch
        logits = self(input_ids)
        # float32 cross-entropy: under bf16 autocast the log-softmax over a large vocabulary loses precision.
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=self.ignore_index)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self.loss(batch), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> dict:
        return configure_optimizers(self.model, self.optimizer_config, self.trainer.estimated_stepping_batches)
