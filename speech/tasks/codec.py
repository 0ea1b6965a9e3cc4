"""Training the mel codec: L1 on the normalised log-mel plus the VQ commitment loss (codebooks follow EMAs)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from longseq.core.train import OptimizerConfig, configure_optimizers
from longseq.speech.codecs.mel import MelCodec


class MelCodecTask(L.LightningModule):
    """Batches are waveforms (b, 1, n)."""

    def __init__(self, model: MelCodec, *, optimizer: OptimizerConfig | None = None):
        super().__init__()
        self.model = model
        self.optimizer_config = optimizer if optimizer is not None else OptimizerConfig(weight_decay=0.0)

    def losses(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        recon, target, _, commit = self.model(wav)
        l1 = F.l1_loss(recon, target)
        return {"loss": l1 + commit, "mel_l1": l1, "commit": commit}

    def training_step(self, wav: torch.Tensor, batch_idx: int) -> torch.Tensor:
        losses = self.losses(wav)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True)
        return losses["loss"]

    def validation_step(self, wav: torch.Tensor, batch_idx: int) -> None:
        self.log_dict({f"val/{k}": v for k, v in self.losses(wav).items()}, sync_dist=True)

    def configure_optimizers(self) -> dict:
        return configure_optimizers(self.model, self.optimizer_config, self.trainer.estimated_stepping_batches)
