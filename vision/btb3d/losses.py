"""BTB3D's adversarial and perceptual training losses (MAGVIT-v2 recipe).

- Non-saturating GAN losses on the discriminator logits (softplus form of sigmoid cross-entropy).
- LeCam regularisation (arXiv 2104.03310): keeps real / fake predictions near EMAs of the other side.
- R1 gradient penalty on real inputs.
- A pluggable perceptual loss: MSE between a frozen torchvision classifier's outputs on real and reconstructed
  slices (BTB3D uses VGG16's logits). Built only from a local weights file; without one it is off.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from longseq.core.checkpoint import CheckpointError, load_strict, load_tensors


def discriminator_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(real) - log(1 - sigmoid(fake)), batch means."""
    return F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()


def generator_loss(fake_logit: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(fake): the non-saturating generator loss."""
    return F.softplus(-fake_logit).mean()


class LeCamEMA(nn.Module):
    """EMAs of the mean real and fake logits (buffers, so they are checkpointed) and the LeCam penalty."""

    def __init__(self, decay: float = 0.999):
        super().__init__()
        self.decay = decay
        self.register_buffer("real_ema", torch.zeros(()))
        self.register_buffer("fake_ema", torch.zeros(()))

    @torch.no_grad()
    def update(self, real_logit: torch.Tensor, fake_logit: torch.Tensor) -> None:
        self.real_ema.mul_(self.decay).add_((1 - self.decay) * real_logit.mean().float())
        self.fake_ema.mul_(self.decay).add_((1 - self.decay) * fake_logit.mean().float())

    def penalty(self, real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
        """relu(mean real - fake EMA)^2 + relu(real EMA - mean fake)^2."""
        real, fake = real_logit.mean(), fake_logit.mean()
        return F.relu(real - self.fake_ema).pow(2) + F.relu(self.real_ema - fake).pow(2)


def r1_penalty(real: torch.Tensor, real_logit: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||d logit / d real||^2; `real` must require grad. Keeps the graph for backward."""
    (grad,) = torch.autograd.grad(real_logit.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()


class PerceptualLoss(nn.Module):
    """MSE between a frozen classifier's outputs on real and reconstructed slices (3 channels, resized to 224).

    Args:
        arch: a torchvision classification model name (BTB3D: "vgg16").
        weights: its state dict file (.pth / .safetensors), read without executing code.
    """

    def __init__(self, *, arch: str, weights: str | os.PathLike):
        super().__init__()
        import torchvision

        try:
            self.net = torchvision.models.get_model(arch, weights=None)
        except ValueError as err:
            raise CheckpointError(f"unknown perceptual network {arch!r}: {err}") from None
        load_strict(self.net, load_tensors(weights), f"perceptual weights {weights}")
        self.net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.net.eval()  # always frozen statistics (batch norm, dropout)
        return self

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """real, fake (b, 1, d, h, w) or (b, 1, h, w) in [-1, 1]."""
        if real.ndim == 5:
            real, fake = (rearrange(v, "b c t h w -> (b t) c h w") for v in (real, fake))
        real, fake = (
            F.interpolate(v.expand(-1, 3, -1, -1), size=224, mode="bilinear", antialias=True) for v in (real, fake)
        )
        return F.mse_loss(self.net(fake), self.net(real))
