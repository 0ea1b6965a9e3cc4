"""Building blocks of the BTB3D tokenizer: the 3D Haar front end and the causal 3D convolution encoder / decoder.

Shape letters: b batch, c channels, t frames (slices, or wavelet frames after the Haar step), h height, w width.
Volumes are channels-first, (b, c, t, h, w). Everything is causal along t: frame i of an output depends only on
frames <= i of the input, so a 2D image is simply a one-slice volume and 2D and 3D share one model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

_SQRT2 = math.sqrt(2.0)


def haar_dwt3d(x: torch.Tensor) -> torch.Tensor:
    """One level of the orthonormal 3D Haar transform, rescaled by 1 / (2 sqrt 2).

    (b, c, 2t, 2h, 2w) -> (b, 8c, t, h, w). On each axis, pairs (2k, 2k+1) become low = (a + b) / sqrt 2 and
    high = (a - b) / sqrt 2. Channels are ordered sub-band first (LLL, LLH, LHL, LHH, HLL, HLH, HHL, HHH with the
    letters for t, h, w), then the input channel: BTB3D's (and NVIDIA Cosmos's) `Patcher3D` layout.
    """
    b, c, t, h, w = x.shape
    if t % 2 or h % 2 or w % 2:
        raise ValueError(f"haar_dwt3d needs even t, h, w; got {(t, h, w)}")
    x = x.reshape(b, c, t // 2, 2, h // 2, 2, w // 2, 2)
    butterfly = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=x.dtype, device=x.device) / _SQRT2
    y = torch.einsum("bcTiHjWk,pi,qj,rk->bpqrcTHW", x, butterfly, butterfly, butterfly)
    return y.reshape(b, 8 * c, t // 2, h // 2, w // 2) / (2 * _SQRT2)


def haar_idwt3d(y: torch.Tensor) -> torch.Tensor:
    """The exact inverse of `haar_dwt3d`: (b, 8c, t, h, w) -> (b, c, 2t, 2h, 2w)."""
    b, c8, t, h, w = y.shape
    if c8 % 8:
        raise ValueError(f"haar_idwt3d needs a multiple of 8 channels; got {c8}")
    y = y.reshape(b, 2, 2, 2, c8 // 8, t, h, w) * (2 * _SQRT2)
    # The butterfly is symmetric and orthonormal, so it is its own inverse.
    butterfly = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=y.dtype, device=y.device) / _SQRT2
    x = torch.einsum("bpqrcTHW,pi,qj,rk->bcTiHjWk", y, butterfly, butterfly, butterfly)
    return x.reshape(b, c8 // 8, 2 * t, 2 * h, 2 * w)


def haar_patch(x: torch.Tensor) -> torch.Tensor:
    """The causal Haar front end: repeat the first slice, then `haar_dwt3d`.

    (b, c, d, h, w) with odd d -> (b, 8c, (d + 1) / 2, h / 2, w / 2). Wavelet frame 0 holds only slice 0, so a
    one-slice image gives one wavelet frame.
    """
    return haar_dwt3d(torch.cat([x[:, :, :1], x], dim=2))


def haar_unpatch(y: torch.Tensor) -> torch.Tensor:
    """Inverse of `haar_patch`: `haar_idwt3d`, then drop the repeated slice. (b, 8c, t, ...) -> (b, c, 2t - 1, ...)."""
    return haar_idwt3d(y)[:, :, 1:]


class CausalConv3d(nn.Conv3d):
    """A Conv3d that pads (k_t - 1) zeros before the first frame and none after (causal in t), k // 2 in space."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: tuple[int, int, int] = (1, 1, 1),
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, bias=bias, device=device, dtype=dtype)
        kt, kh, kw = self.kernel_size
        self.causal_padding = (kw // 2, kw // 2, kh // 2, kh // 2, kt - 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.causal_padding))


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over (channels, h, w) of each frame separately, so normalisation never mixes frames (causal)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = super().forward(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> causal 3x3x3 conv, twice, plus the input (through a 1x1x1 conv when widths differ)."""

    def __init__(self, in_channels: int, out_channels: int, *, norm_groups: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm1 = FrameGroupNorm(norm_groups, in_channels, eps=1e-5, **dd)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, bias=False, **dd)
        self.norm2 = FrameGroupNorm(norm_groups, out_channels, eps=1e-5, **dd)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, bias=False, **dd)
        self.shortcut = (
            CausalConv3d(in_channels, out_channels, 1, bias=False, **dd) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.shortcut is None else self.shortcut(x))


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine parameters, then a per-voxel scale and shift predicted from the quantized latent.

    out = norm(x) * (1 + gamma(cond)) + beta(cond), with gamma, beta Linear maps over cond's channels.
    """

    def __init__(self, cond_channels: int, channels: int, *, norm_groups: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.norm = FrameGroupNorm(norm_groups, channels, eps=1e-5, affine=False, **dd)
        self.gamma = nn.Linear(cond_channels, channels, **dd)
        self.beta = nn.Linear(cond_channels, channels, **dd)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (b, c, t, h, w); cond (b, k, t, h, w) already resized to x's grid."""
        cond = rearrange(cond, "b k t h w -> b t h w k")
        gamma = rearrange(self.gamma(cond), "b t h w c -> b c t h w")
        beta = rearrange(self.beta(cond), "b t h w c -> b c t h w")
        return self.norm(x) * (1.0 + gamma) + beta


class EncoderStage(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_blocks: int,
        t_stride: int | None,
        norm_groups: int,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        widths = [in_channels] + [out_channels] * num_blocks
        self.blocks = nn.Sequential(
            *[ResBlock(widths[j], widths[j + 1], norm_groups=norm_groups, **dd) for j in range(num_blocks)]
        )
        # The last stage does not downsample (t_stride None).
        self.downsample = (
            CausalConv3d(out_channels, out_channels, 3, stride=(t_stride, 2, 2), **dd) if t_stride is not None else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        return x if self.downsample is None else self.downsample(x)


class Encoder(nn.Module):
    """Wavelet frames (b, in_channels, t, h, w) -> latent (b, out_channels, 1 + (t - 1) / f, h / s, w / s).

    f = 2 ** (number of temporal downsamplings), s = 2 ** (number of stages - 1).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        filters: int,
        channel_multipliers: tuple[int, ...],
        temporal_downsample: tuple[bool, ...],
        num_res_blocks: int,
        norm_groups: int,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        widths = [filters * m for m in channel_multipliers]
        self.conv_in = CausalConv3d(in_channels, filters, 3, **dd)
        strides = [2 if down else 1 for down in temporal_downsample] + [None]
        self.stages = nn.ModuleList(
            EncoderStage(
                ([filters] + widths)[i],
                widths[i],
                num_blocks=num_res_blocks,
                t_stride=strides[i],
                norm_groups=norm_groups,
                **dd,
            )
            for i in range(len(widths))
        )
        self.mid = nn.Sequential(
            *[ResBlock(widths[-1], widths[-1], norm_groups=norm_groups, **dd) for _ in range(num_res_blocks)]
        )
        self.norm_out = FrameGroupNorm(norm_groups, widths[-1], eps=1e-5, **dd)
        self.conv_out = CausalConv3d(widths[-1], out_channels, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for stage in self.stages:
            x = stage(x)
        x = self.mid(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class DecoderStage(nn.Module):
    """Conditional norm -> res blocks -> (optionally) causal depth-to-space upsampling by (t_stride, 2, 2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        cond_channels: int,
        num_blocks: int,
        t_stride: int | None,
        norm_groups: int,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.cond_norm = AdaptiveGroupNorm(cond_channels, in_channels, norm_groups=norm_groups, **dd)
        widths = [in_channels] + [out_channels] * num_blocks
        self.blocks = nn.Sequential(
            *[ResBlock(widths[j], widths[j + 1], norm_groups=norm_groups, **dd) for j in range(num_blocks)]
        )
        self.t_stride = t_stride
        self.upsample = (
            CausalConv3d(out_channels, out_channels * 4 * t_stride, 3, **dd) if t_stride is not None else None
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.blocks(self.cond_norm(x, cond))
        if self.upsample is None:
            return x, cond
        ts = self.t_stride
        # Channels are ordered (t_stride, 2, 2, c) with c fastest, as in the released weights.
        x = rearrange(self.upsample(x), "b (ts hs ws c) t h w -> b c (t ts) (h hs) (w ws)", ts=ts, hs=2, ws=2)
        cond = F.interpolate(cond, size=x.shape[2:], mode="nearest")
        # Causality: frame 0 expands to ts frames of which only the last is kept, so t -> ts * (t - 1) + 1.
        return x[:, :, ts - 1 :], cond[:, :, ts - 1 :]


class Decoder(nn.Module):
    """Quantized latent (b, in_channels, l, h, w) -> wavelet frames (b, out_channels, f * (l - 1) + 1, h * s, w * s).

    Every stage is conditioned on the latent itself (nearest-resized), so the tokens steer each resolution.
    Stages run from the deepest (index 0) to the finest.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        filters: int,
        channel_multipliers: tuple[int, ...],
        temporal_downsample: tuple[bool, ...],
        num_res_blocks: int,
        norm_groups: int,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        widths = [filters * m for m in reversed(channel_multipliers)]
        strides = [2 if down else 1 for down in reversed(temporal_downsample)] + [None]
        self.conv_in = CausalConv3d(in_channels, widths[0], 3, **dd)
        self.mid = nn.Sequential(
            *[ResBlock(widths[0], widths[0], norm_groups=norm_groups, **dd) for _ in range(num_res_blocks)]
        )
        self.stages = nn.ModuleList(
            DecoderStage(
                ([widths[0]] + widths)[s],
                widths[s],
                cond_channels=in_channels,
                num_blocks=num_res_blocks,
                t_stride=strides[s],
                norm_groups=norm_groups,
                **dd,
            )
            for s in range(len(widths))
        )
        self.norm_out = FrameGroupNorm(norm_groups, widths[-1], eps=1e-5, **dd)
        self.conv_out = CausalConv3d(widths[-1], out_channels, 3, **dd)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(z))
        cond = z
        for stage in self.stages:
            x, cond = stage(x, cond)
        return self.conv_out(F.silu(self.norm_out(x)))
