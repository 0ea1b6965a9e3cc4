"""Training CLaM-TTS's latent language model: the negative variational bound of the mixture-of-Gaussians head
plus the end-of-speech classifier, teacher-forced (the Mel-VAE stays frozen).

Items are utterances and, for a share of them, pairs: two utterances of one speaker in a row with their texts
joined (`speech.tasks.data.CodeUtterances`), the setting of prompted synthesis, so that the end classifier
learns that the end of one utterance's audio is not the end of speech while text remains. The loss covers the
whole pair, as it covers a whole utterance: the latent LM, like VALL-E's AR, is a continuation model trained
on whole sequences without a prompt/target split (only VALL-E 2's NAR, which takes its prompt as a condition,
leaves the prompt out of its loss); the first utterance is ordinary speech for the first part of the text, and
the lesson that matters, no end after it, is the end-classifier target at the junction, which belongs to the
second part.
"""

from __future__ import annotations

import lightning as L
import torch

from core.train import OptimizerConfig, configure_optimizers
from speech.models.clam_tts import ClamTTS


class ClamTTSTask(L.LightningModule):
    """Batches come from `speech.tasks.data.collate_utterances`."""

    def __init__(self, model: ClamTTS, *, optimizer: OptimizerConfig | None = None):
        super().__init__()
        self.model = model
        self.optimizer_config = optimizer if optimizer is not None else OptimizerConfig()

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model.losses(batch["text"], batch["text_lens"], batch["codes"], batch["code_lens"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=len(batch["text"]))
        return losses["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        losses = self.losses(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=len(batch["text"]))

    def configure_optimizers(self) -> dict:
        return configure_optimizers(self.model, self.optimizer_config, self.trainer.estimated_stepping_batches)
