"""BTB3D's StyleGAN-style discriminators: a 3D one for volumes and a 2D one for single slices.

conv_in -> LeakyReLU -> residual blocks that blur-pool by 2 on every axis -> conv_out -> LeakyReLU -> flatten ->
linear0 -> LeakyReLU -> linear1 (one logit). The flatten makes the input size part of the architecture
(`spatial_size`, `num_frames`), as upstream. Parameter names match the released training checkpoints
(`discriminator.*`, `discriminator_2d.*`); loading such a file with `longseq.from_pretrained` keeps only its tokenizer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class BlurPool(nn.Module):
    """Anti-aliased downsampling by 2: reflect-pad 1, then a depthwise [1, 2, 1]-binomial filter with stride 2."""

    def __init__(self, channels: int, *, dims: int, device=None, dtype=None):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0], device=device, dtype=dtype)
        kernel = taps
        for _ in range(dims - 1):
            kernel = kernel.unsqueeze(-1) * taps
        kernel = kernel / kernel.sum()
        self.dims = dims
        self.register_buffer("filt", kernel.expand(channels, 1, *kernel.shape).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1) * self.dims, mode="reflect")
        conv = F.conv3d if self.dims == 3 else F.conv2d
        return conv(x, self.filt.to(x.dtype), stride=2, groups=x.shape[1])


class ResBlockDown(nn.Module):
    """(conv3 -> LeakyReLU -> blur -> conv3 -> LeakyReLU) + (blur -> conv1x1), divided by sqrt 2."""

    def __init__(self, in_channels: int, out_channels: int, *, dims: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.conv1 = conv(in_channels, in_channels, 3, padding=1, **dd)
        self.blur = BlurPool(in_channels, dims=dims, **dd)
        self.conv2 = conv(in_channels, out_channels, 1, bias=False, **dd)
        self.conv3 = conv(in_channels, out_channels, 3, padding=1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blur(F.leaky_relu(self.conv1(x), 0.2))
        h = F.leaky_relu(self.conv3(h), 0.2)
        return (self.conv2(self.blur(x)) + h) / math.sqrt(2.0)


class _StyleGANDiscriminator(nn.Module):
    def __init__(
        self,
        *,
        dims: int,
        in_channels: int,
        filters: int,
        channel_multipliers: tuple[int, ...],
        grid: tuple[int, ...],
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        widths = [filters * m for m in channel_multipliers]
        self.grid = grid
        self.conv_in = conv(in_channels, filters, 3, padding=1, **dd)
        self.res_blocks = nn.Sequential(
            *[ResBlockDown(([filters] + widths)[i], widths[i], dims=dims, **dd) for i in range(len(widths))]
        )
        self.conv_out = conv(widths[-1], widths[-1], 3, padding=1, **dd)
        out_grid = list(grid)
        for _ in widths:
            out_grid = [math.ceil(n / 2) for n in out_grid]
        self.linear0 = nn.Linear(math.prod(out_grid) * widths[-1], widths[-1], **dd)
        self.linear1 = nn.Linear(widths[-1], 1, **dd)
        for module in self.modules():
            if isinstance(module, (nn.Conv3d, nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain("relu"))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, c, *grid) -> logits (b, 1)."""
        if tuple(x.shape[2:]) != self.grid:
            name = type(self).__name__
            raise ValueError(f"{name} was built for inputs of size {self.grid}, got {tuple(x.shape[2:])}")
        x = F.leaky_relu(self.conv_in(x), 0.2)
        x = F.leaky_relu(self.conv_out(self.res_blocks(x)), 0.2)
        x = F.leaky_relu(self.linear0(x.flatten(1)), 0.2)
        return self.linear1(x)


class Discriminator3D(_StyleGANDiscriminator):
    """Volumes (b, c, num_frames, spatial_size, spatial_size) -> (b, 1)."""

    def __init__(
        self,
        *,
        filters: int = 8,
        channel_multipliers: tuple[int, ...] = (1, 2, 4),
        spatial_size: int,
        num_frames: int,
        in_channels: int = 1,
        device=None,
        dtype=None,
    ):
        super().__init__(
            dims=3,
            in_channels=in_channels,
            filters=filters,
            channel_multipliers=channel_multipliers,
            grid=(num_frames, spatial_size, spatial_size),
            device=device,
            dtype=dtype,
        )


class Discriminator2D(_StyleGANDiscriminator):
    """Slices (b, c, spatial_size, spatial_size) -> (b, 1)."""

    def __init__(
        self,
        *,
        filters: int = 8,
        channel_multipliers: tuple[int, ...] = (1, 2, 4),
        spatial_size: int,
        in_channels: int = 1,
        device=None,
        dtype=None,
    ):
        super().__init__(
            dims=2,
            in_channels=in_channels,
            filters=filters,
            channel_multipliers=channel_multipliers,
            grid=(spatial_size, spatial_size),
            device=device,
            dtype=dtype,
        )
