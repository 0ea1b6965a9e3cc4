"""Training the BTB3D tokenizer with Lightning: the three-stage curriculum and its losses.

Stages (BTB3D, arXiv 2510.20639):
  1. local reconstruction: 9-slice excerpts (one encoding window) alternating with 2D batches of single slices;
  2. overlapping-window tiling: longer excerpts (41 slices) through the tiled encoder;
  3. long-context decoder refinement: encoder and quantizer frozen, the decoder trained on long latents.

Per batch, generator then discriminator (manual optimisation, two Adam optimizers with betas (0, 0.99)):
  generator: recon_weight * L1 + aux_weight * (entropy_weight * LFQ entropy + 0.25 * commitment)
             + perceptual_weight * perceptual (off without weights) + g_weight * non-saturating GAN loss;
  discriminator: non-saturating loss + lecam_weight * LeCam + r1_weight * R1 every r1_every steps.
3D batches go to the 3D discriminator (on a `disc_frames`-slice crop, its input size being fixed), 2D batches
to the 2D one. The entropy weight starts at entropy_scale * entropy_weight and decays linearly over
entropy_decay_steps. Every random choice derives from (seed, step), and the step counter and LeCam EMAs are
buffers, so a run resumed from a Lightning checkpoint continues exactly.
"""

from __future__ import annotations

import functools

import lightning as L
import torch
import torch.nn.functional as F

from longseq.core.train import ResumableDataLoader, cosine_with_warmup
from longseq.vision.btb3d.dataset import ExcerptBatches, first_item
from longseq.vision.btb3d.discriminators import Discriminator2D, Discriminator3D
from longseq.vision.btb3d.losses import LeCamEMA, PerceptualLoss, discriminator_loss, generator_loss, r1_penalty
from longseq.vision.btb3d.model import BTB3D
from longseq.vision.btb3d.train_config import BTB3DTrainConfig


class BTB3DTask(L.LightningModule):
    """LightningModule training a `BTB3D` tokenizer (and its discriminators) at one curriculum stage.

    Batches are (b, 1, d, h, w) tensors in [-1, 1]: d = 1 for a 2D batch.
    """

    def __init__(self, model: BTB3D, config: BTB3DTrainConfig, *, total_steps: int):
        super().__init__()
        self.automatic_optimization = False
        self.model, self.config, self.total_steps = model, config, total_steps
        if config.use_gan:
            size, filters = config.crop_size, config.disc_filters
            self.disc3d = Discriminator3D(filters=filters, spatial_size=size, num_frames=config.disc_frames)
            self.disc2d = Discriminator2D(filters=filters, spatial_size=size)
            self.lecam3d, self.lecam2d = LeCamEMA(config.lecam_decay), LeCamEMA(config.lecam_decay)
        self.perceptual = (
            PerceptualLoss(arch=config.perceptual_arch, weights=config.perceptual_weights)
            if config.perceptual_weights is not None and config.perceptual_weight > 0
            else None
        )
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
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
        return [*self.disc3d.parameters(), *self.disc2d.parameters()]

    def configure_optimizers(self):
        c = self.config

        # Linear warm-up, then a cosine to zero over the run (transformers' schedule, as upstream).
        schedule = functools.partial(
            cosine_with_warmup, warmup_steps=c.warmup_steps, total_steps=self.total_steps, min_lr_ratio=0.0
        )

        optimizers = [torch.optim.Adam(self.generator_parameters(), lr=c.lr, betas=c.betas)]
        if c.use_gan:
            optimizers.append(
                torch.optim.Adam(self.discriminator_parameters(), lr=c.lr * c.disc_lr_scale, betas=c.betas)
            )
        schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, schedule) for opt in optimizers]
        return optimizers, schedulers

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed * 1_000_003 + int(self.step))

    def reconstruct(self, x: torch.Tensor, entropy_weight: float):
        """(recon, tokens). Stage 3 encodes without gradients (frozen encoder and quantizer)."""
        if self.config.stage == 3:
            with torch.no_grad():
                tokens = self.model.quantize_latent(self.model.encode(x))
            return self.model.decode(tokens.quantized), tokens
        return self.model(x, tiled=True, entropy_weight=entropy_weight)

    def _disc_view(self, x: torch.Tensor, recon: torch.Tensor, generator: torch.Generator):
        """The discriminator, its LeCam EMA, and the (real, fake) inputs it takes for this batch."""
        if x.shape[2] == 1:
            return self.disc2d, self.lecam2d, x[:, :, 0], recon[:, :, 0]
        frames = self.config.disc_frames
        if x.shape[2] < frames:
            raise ValueError(f"3D excerpts need at least disc_frames={frames} slices, got {x.shape[2]}")
        start = int(torch.randint(0, x.shape[2] - frames + 1, (), generator=generator))
        return self.disc3d, self.lecam3d, x[:, :, start : start + frames], recon[:, :, start : start + frames]

    def training_step(self, x: torch.Tensor, batch_idx: int):
        c = self.config
        step = int(self.step)
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        schedulers = self.lr_schedulers()
        schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
        generator = self._generator()

        recon, tokens = self.reconstruct(x, c.entropy_weight_at(step))
        recon_loss = F.l1_loss(recon, x)
        gen_loss = c.recon_weight * recon_loss + c.aux_weight * tokens.losses["aux"]
        logs = {
            "loss/recon_l1": recon_loss,
            "loss/lfq_entropy": tokens.losses["entropy"],
            "loss/lfq_commitment": tokens.losses["commitment"],
        }
        if self.perceptual is not None:
            perceptual = self.perceptual(x, recon)
            gen_loss = gen_loss + c.perceptual_weight * perceptual
            logs["loss/perceptual"] = perceptual
        if c.use_gan:
            disc, lecam, real, fake = self._disc_view(x, recon, generator)
            g_adv = generator_loss(disc(fake))
            gen_loss = gen_loss + c.g_weight * g_adv
            logs["loss/g_adversarial"] = g_adv
        self._optimize(optimizers[0], schedulers[0], gen_loss, self.generator_parameters())
        logs["loss/generator"] = gen_loss.detach()

        if c.use_gan:
            apply_r1 = (step + 1) % c.r1_every == 0
            real = real.detach().requires_grad_(apply_r1)
            real_logit, fake_logit = disc(real), disc(fake.detach())
            lecam.update(real_logit, fake_logit)
            d_adv = discriminator_loss(real_logit, fake_logit)
            d_loss = c.d_weight * d_adv + c.lecam_weight * lecam.penalty(real_logit, fake_logit)
            if apply_r1:
                r1 = r1_penalty(real, real_logit)
                d_loss = d_loss + c.r1_weight * r1
                logs["loss/r1"] = r1
            self._optimize(optimizers[1], schedulers[1], d_loss, self.discriminator_parameters())
            logs["loss/discriminator"] = d_loss.detach()

        self.step += 1
        self.log_dict(
            {k: float(v.detach()) for k, v in logs.items()}, prog_bar=False, on_step=True, batch_size=x.shape[0]
        )
        self.log("recon_l1", float(recon_loss.detach()), prog_bar=True, on_step=True, batch_size=x.shape[0])
        return gen_loss.detach()

    def _optimize(self, optimizer, scheduler, loss: torch.Tensor, params: list[torch.nn.Parameter]) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        optimizer.step()
        scheduler.step()

    def validation_step(self, x: torch.Tensor, batch_idx: int):
        with torch.no_grad():
            recon, _ = self.model(x, tiled=True)
        self.log("val/recon_l1", F.l1_loss(recon, x), prog_bar=True, batch_size=x.shape[0])


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
