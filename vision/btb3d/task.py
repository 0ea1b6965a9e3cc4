"""Training the BTB3D tokenizer with Lightning: the three-stage curriculum and its losses.

Stages (BTB3D, arXiv 2510.20639):
  1. local reconstruction: 9-slice excerpts (one encoding window) alternating with 2D batches of single slices;
  2. overlapping-window tiling: longer excerpts (41 slices) through the tiled encoder;
  3. long-context decoder refinement: encoder and quantizer frozen, the decoder trained on long latents.

Per batch (manual optimisation; one AdamW over the tokenizer's and the discriminators' parameter groups, so one
optimizer step per batch):
  generator: recon_weight * L1 + aux_weight * (entropy_weight * LFQ entropy + 0.25 * commitment)
             + perceptual_weight * perceptual (off without weights) + g_weight * non-saturating GAN loss;
  discriminator: non-saturating loss + lecam_weight * LeCam + r1_weight * R1 every r1_every steps.
The generator's loss reaches the discriminators too; those gradients are dropped before the discriminator's own
loss is back-propagated, and both networks are clipped to the gradient norm separately: the same update as a
generator step followed by a discriminator step on the reconstruction made before it (with weight_decay 0, AdamW
is the released Adam), counted as one step by Lightning. 3D batches go to the 3D discriminator
(on a `disc_frames`-slice crop, its input size being fixed), 2D batches to the 2D one. The entropy weight starts
at entropy_scale * entropy_weight and decays linearly over entropy_decay_steps. Random choices use the global
generators, which `core.train.StepSeed` reseeds from (seed, step), and the LeCam EMAs are buffers, so a run
resumed from a Lightning checkpoint continues exactly.
"""

from __future__ import annotations

import functools

import lightning as L
import torch
import torch.nn.functional as F

from longseq.core.train import OptimizerConfig, ResumableDataLoader, cosine_with_warmup, param_groups
from longseq.vision.btb3d.dataset import ExcerptBatches, first_item
from longseq.vision.btb3d.discriminators import Discriminator2D, Discriminator3D
from longseq.vision.btb3d.losses import LeCamEMA, PerceptualLoss, discriminator_loss, generator_loss, r1_penalty
from longseq.vision.btb3d.model import BTB3D
from longseq.vision.btb3d.train_config import BTB3DTaskConfig


class BTB3DTask(L.LightningModule):
    """LightningModule training a `BTB3D` tokenizer (and its discriminators) at one curriculum stage.

    Batches are (b, 1, d, h, w) tensors in [-1, 1]: d = 1 for a 2D batch, h = w = ``crop_size``.

    Args:
        model: the tokenizer.
        config: the stage and the losses.
        optimizer: AdamW and its schedule (the discriminators' learning rate is scaled by ``disc_lr_scale``).
        crop_size: the excerpts' in-plane size (the discriminators are built for it).
        gradient_clip_val: clip each network's gradient norm to this (None: no clipping).
    """

    def __init__(
        self,
        model: BTB3D,
        config: BTB3DTaskConfig,
        *,
        optimizer: OptimizerConfig,
        crop_size: int,
        gradient_clip_val: float | None,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.model, self.config, self.optimizer_config = model, config, optimizer
        self.gradient_clip_val = gradient_clip_val
        if config.use_gan:
            filters = config.disc_filters
            self.disc3d = Discriminator3D(filters=filters, spatial_size=crop_size, num_frames=config.disc_frames)
            self.disc2d = Discriminator2D(filters=filters, spatial_size=crop_size)
            self.lecam3d, self.lecam2d = LeCamEMA(config.lecam_decay), LeCamEMA(config.lecam_decay)
        self.perceptual = (
            PerceptualLoss(arch=config.perceptual_arch, weights=config.perceptual_weights)
            if config.perceptual_weights is not None and config.perceptual_weight > 0
            else None
        )
        if config.stage == 3:
            self.model.encoder.requires_grad_(False)  # the quantizer has no parameters

    def state_dict(self, *args, **kwargs):
        # The perceptual network comes from its own weights file; checkpoints need not carry it.
        state = super().state_dict(*args, **kwargs)
        return {k: v for k, v in state.items() if not k.startswith("perceptual.")}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if self.perceptual is not None:
            state_dict = dict(state_dict) | {f"perceptual.{k}": v for k, v in self.perceptual.state_dict().items()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def on_train_epoch_start(self) -> None:
        # Datasets draw their excerpts from (seed, epoch, index): tell them the epoch.
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def generator_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def discriminator_parameters(self) -> list[torch.nn.Parameter]:
        return [*self.disc3d.parameters(), *self.disc2d.parameters()] if self.config.use_gan else []

    def configure_optimizers(self):
        o = self.optimizer_config
        groups = param_groups(self.model, o.weight_decay)
        if self.config.use_gan:
            for disc in (self.disc3d, self.disc2d):
                groups += [
                    {**group, "lr": o.lr * self.config.disc_lr_scale} for group in param_groups(disc, o.weight_decay)
                ]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=o.lr, betas=o.betas, eps=o.eps)
        schedule = functools.partial(
            cosine_with_warmup,
            warmup_steps=o.warmup_steps,
            total_steps=int(self.trainer.estimated_stepping_batches),
            min_lr_ratio=o.min_lr_ratio,
        )
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)}

    def reconstruct(self, x: torch.Tensor, entropy_weight: float):
        """(recon, tokens). Stage 3 encodes without gradients (frozen encoder and quantizer)."""
        if self.config.stage == 3:
            with torch.no_grad():
                tokens = self.model.quantize_latent(self.model.encode(x))
            return self.model.decode(tokens.quantized), tokens
        return self.model(x, tiled=True, entropy_weight=entropy_weight)

    def _disc_view(self, x: torch.Tensor, recon: torch.Tensor):
        """The discriminator, its LeCam EMA, and the (real, fake) inputs it takes for this batch."""
        if x.shape[2] == 1:
            return self.disc2d, self.lecam2d, x[:, :, 0], recon[:, :, 0]
        frames = self.config.disc_frames
        if x.shape[2] < frames:
            raise ValueError(f"3D excerpts need at least disc_frames={frames} slices, got {x.shape[2]}")
        start = int(torch.randint(0, x.shape[2] - frames + 1, ()))
        return self.disc3d, self.lecam3d, x[:, :, start : start + frames], recon[:, :, start : start + frames]

    def training_step(self, x: torch.Tensor, batch_idx: int):
        c = self.config
        step = self.global_step
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()

        recon, tokens = self.reconstruct(x, c.entropy_weight_at(step))
        recon_loss = F.l1_loss(recon, x)
        gen_loss = c.recon_weight * recon_loss + c.aux_weight * tokens.losses["aux"]
        logs = {
            "train/recon_l1": recon_loss,
            "train/lfq_entropy": tokens.losses["entropy"],
            "train/lfq_commitment": tokens.losses["commitment"],
        }
        if self.perceptual is not None:
            perceptual = self.perceptual(x, recon)
            gen_loss = gen_loss + c.perceptual_weight * perceptual
            logs["train/perceptual"] = perceptual
        if c.use_gan:
            disc, lecam, real, fake = self._disc_view(x, recon)
            g_adv = generator_loss(disc(fake))
            gen_loss = gen_loss + c.g_weight * g_adv
            logs["train/g_adversarial"] = g_adv
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(gen_loss)
        logs["train/loss"] = gen_loss

        if c.use_gan:
            for param in self.discriminator_parameters():
                param.grad = None  # the generator's loss does not train the discriminators
            apply_r1 = (step + 1) % c.r1_every == 0
            real = real.detach().requires_grad_(apply_r1)
            real_logit, fake_logit = disc(real), disc(fake.detach())
            lecam.update(real_logit, fake_logit)
            d_loss = c.d_weight * discriminator_loss(real_logit, fake_logit)
            d_loss = d_loss + c.lecam_weight * lecam.penalty(real_logit, fake_logit)
            if apply_r1:
                r1 = r1_penalty(real, real_logit)
                d_loss = d_loss + c.r1_weight * r1
                logs["train/r1"] = r1
            self.manual_backward(d_loss)
            logs["train/discriminator"] = d_loss

        if self.gradient_clip_val is not None:
            for params in (self.generator_parameters(), self.discriminator_parameters()):
                torch.nn.utils.clip_grad_norm_(params, self.gradient_clip_val)
        optimizer.step()
        scheduler.step()
        for name, value in logs.items():
            shown = name in ("train/loss", "train/recon_l1")
            self.log(name, float(value.detach()), prog_bar=shown, on_step=True, batch_size=x.shape[0])
        return gen_loss.detach()


class ExcerptDataModule(L.LightningDataModule):
    """Serves `ExcerptBatches` through core.train's `ResumableDataLoader` (exact mid-epoch resume)."""

    def __init__(self, batches: ExcerptBatches):
        super().__init__()
        self.batches = batches

    def train_dataloader(self) -> ResumableDataLoader:
        return ResumableDataLoader(
            self.batches,
            batch_size=1,
            shuffle=False,
            num_replicas=self.trainer.world_size,
            rank=self.trainer.global_rank,
            collate_fn=first_item,
        )
