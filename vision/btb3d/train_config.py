"""The BTB3D training configuration (no heavy imports, so the CLI can expose it as ``--train.*`` flags)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(kw_only=True)
class BTB3DTrainConfig:
    """Losses and optimisation. Defaults follow the released 8x8x8 training config (lr aside: 1e-5 there)."""

    stage: Literal[1, 2, 3] = 1
    lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.99)
    warmup_steps: int = 500
    disc_lr_scale: float = 0.8
    max_grad_norm: float | None = 0.5
    recon_weight: float = 5.0
    aux_weight: float = 1.0
    entropy_weight: float = 0.1
    entropy_scale: float = 3.0
    entropy_decay_steps: int = 2000
    use_gan: bool = True
    g_weight: float = 0.1
    d_weight: float = 1.0
    lecam_weight: float = 0.001
    lecam_decay: float = 0.999
    r1_weight: float = 10.0
    r1_every: int = 20
    disc_filters: int = 8
    disc_frames: int = 9
    """Slices the 3D discriminator sees (a random crop of longer excerpts)."""
    crop_size: int = 64
    """In-plane size of the training excerpts (the discriminators are built for it)."""
    perceptual_weight: float = 0.3
    perceptual_arch: str = "vgg16"
    perceptual_weights: str | None = None
    """A local weights file for the perceptual network; None turns the perceptual loss off."""
    seed: int = 0

    def __post_init__(self):
        if self.lr <= 0 or self.warmup_steps < 0 or self.r1_every < 1 or self.entropy_decay_steps < 0:
            raise ValueError("lr must be positive, warmup_steps and entropy_decay_steps >= 0, r1_every >= 1")
        if self.disc_frames < 1 or (self.disc_frames - 1) % 8:
            raise ValueError(f"disc_frames must be 1 + a multiple of 8, got {self.disc_frames}")
        if self.crop_size < 8 or self.crop_size % 8:
            raise ValueError(f"crop_size must be a positive multiple of 8, got {self.crop_size}")

    def entropy_weight_at(self, step: int) -> float:
        """Linear decay from entropy_scale * entropy_weight to entropy_weight over entropy_decay_steps."""
        if step >= self.entropy_decay_steps:
            return self.entropy_weight
        start = self.entropy_scale * self.entropy_weight
        return start + (self.entropy_weight - start) * step / self.entropy_decay_steps
