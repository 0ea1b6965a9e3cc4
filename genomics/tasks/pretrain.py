"""Pretraining: HyenaDNA by next-token prediction, Caduceus by masked language modelling (as in the papers).

- Causal (HyenaDNA): cross-entropy of the next base over windows of the genome; optional sequence-length
  warm-up (HyenaDNA trains short windows first and doubles their length in stages: here each batch is cropped
  to the current stage's length) and optional reverse-complement augmentation (each window replaced by its
  RC with probability 1/2; the RC strand is DNA with the same statistics).
- Masked LM (Caduceus): 15 % of the bases are selected; of those 80 % become ``[MASK]``, 10 % a random token
  drawn from the 12-token vocabulary (specials included, as upstream) and 10 % stay; the loss counts the
  selected positions only. N is turned into ``[PAD]`` first, so it is never a target. RC augmentation is the
  paper's recipe for Caduceus-Ph; Caduceus-PS is RC-equivariant and trains without it.

Randomness (crops, masks, augmentation) draws from torch's global generator, which `core.train`'s StepSeed
reseeds before every batch, so a resumed run draws the same. Validation masks come from a generator seeded
by the batch index, so every validation sees the same masks.
"""

from __future__ import annotations

import math
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.train.optim import OptimizerConfig, configure_optimizers
from longseq.genomics.data.tokenizer import MASK, PAD, VOCAB_SIZE, A, N, T, complement_table

Objective = Literal["causal", "mlm"]


def mask_tokens(
    ids: torch.Tensor, *, mask_prob: float = 0.15, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT-style masking of base tokens (b, l) -> (inputs, targets); targets are ``[PAD]`` where not selected."""
    ids = torch.where(ids == N, PAD, ids)
    is_base = (ids >= A) & (ids <= T)

    def uniform() -> torch.Tensor:
        return torch.rand(ids.shape, generator=generator, device=ids.device)

    selected = is_base & (uniform() < mask_prob)
    targets = torch.where(selected, ids, PAD)
    draw = uniform()
    random_tokens = torch.randint(0, VOCAB_SIZE, ids.shape, generator=generator, device=ids.device)
    inputs = torch.where(selected & (draw < 0.8), MASK, ids)
    inputs = torch.where(selected & (draw >= 0.8) & (draw < 0.9), random_tokens, inputs)
    return inputs, targets


def reverse_complement_rows(ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Replace the chosen rows (b,) bool of ids (b, l) by their reverse complement."""
    rc = complement_table(ids.device)[ids.flip(1)]
    return torch.where(rows[:, None], rc, ids)


def warmup_length(step: int, *, seq_len: int, start: int | None, stage_steps: int) -> int:
    """The training window length at optimizer step ``step``: ``start`` doubled every ``stage_steps``."""
    if start is None or stage_steps <= 0:
        return seq_len
    return min(seq_len, start * 2 ** (step // stage_steps))


class PretrainTask(L.LightningModule):
    """Pretraining of a `HyenaDNA` (objective "causal") or `Caduceus` (objective "mlm").

    Batches are ``(input_ids, targets)`` windows from `core.train.TokenWindowDataModule`; the masked LM uses the
    input windows only. Logs ``train/loss``, ``val/loss`` (nats) and ``val/bits_per_base``.

    Args:
        model: the network; saved afterwards with its own ``save_pretrained``.
        objective: "causal" or "mlm".
        optimizer: AdamW and schedule (`core.train.OptimizerConfig`).
        rc_augment: replace each training window by its reverse complement with probability 1/2.
        warmup_start, warmup_stage_steps: sequence-length warm-up (None: train at full length throughout).
        mask_prob: the masked-LM selection rate.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        objective: Objective,
        optimizer: OptimizerConfig | None = None,
        rc_augment: bool = False,
        warmup_start: int | None = None,
        warmup_stage_steps: int = 0,
        mask_prob: float = 0.15,
    ):
        super().__init__()
        if objective not in ("causal", "mlm"):
            raise ValueError(f"objective must be 'causal' or 'mlm'; got {objective!r}")
        if not 0 < mask_prob <= 1:
            raise ValueError(f"mask_prob must be in (0, 1]; got {mask_prob}")
        self.model = model
        self.objective = objective
        self.optimizer_config = optimizer or OptimizerConfig()
        self.rc_augment = rc_augment
        self.warmup_start = warmup_start
        self.warmup_stage_steps = warmup_stage_steps
        self.mask_prob = mask_prob

    def _causal_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.model(inputs)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD)

    def _mlm_loss(
        self, ids: torch.Tensor, generator: torch.Generator | None = None, *, only_masked: bool = False
    ) -> torch.Tensor:
        """BERT's loss over every selected position; with ``only_masked`` over those shown as ``[MASK]`` (a
        validation figure: the selected positions left unchanged show the model the answer)."""
        inputs, targets = mask_tokens(ids, mask_prob=self.mask_prob, generator=generator)
        if only_masked:
            targets = torch.where(inputs == MASK, targets, PAD)
        logits = self.model(inputs)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        seq_len = inputs.shape[1]
        length = warmup_length(
            self.global_step, seq_len=seq_len, start=self.warmup_start, stage_steps=self.warmup_stage_steps
        )
        if length < seq_len:
            offset = int(torch.randint(0, seq_len - length + 1, ()))
            inputs, targets = inputs[:, offset : offset + length], targets[:, offset : offset + length]
        if self.objective == "causal":
            if self.rc_augment:
                # The RC of the whole (l + 1)-window, split again into input and next-token target.
                window = torch.cat([inputs[:, :1], targets], dim=1)
                window = reverse_complement_rows(window, torch.rand(len(window), device=window.device) < 0.5)
                inputs, targets = window[:, :-1], window[:, 1:]
            loss = self._causal_loss(inputs, targets)
        else:
            if self.rc_augment:
                inputs = reverse_complement_rows(inputs, torch.rand(len(inputs), device=inputs.device) < 0.5)
            loss = self._mlm_loss(inputs)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/seq_len", float(length))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        inputs, targets = batch
        if self.objective == "causal":
            loss = self._causal_loss(inputs, targets)
        else:
            generator = torch.Generator(device=inputs.device).manual_seed(batch_idx)
            loss = self._mlm_loss(inputs, generator, only_masked=True)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/bits_per_base", loss / math.log(2), sync_dist=True)

    def configure_optimizers(self) -> dict:
        return configure_optimizers(self.model, self.optimizer_config, self.trainer.estimated_stepping_batches)
