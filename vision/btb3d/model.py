"""BTB3D: a frequency-aware volumetric tokenizer for CT (ibrahimethemhamamci/BTB3D, arXiv 2510.20639).

A volume (b, 1, d, h, w) goes through a one-level 3D Haar transform (8 sub-bands at half resolution), a causal
3D-conv encoder, and lookup-free quantization to `token_bits`-bit tokens; the decoder mirrors the encoder and an
inverse Haar gives the volume back. Compression is 8x8x8 (channel multipliers (1, 2, 4)) or 16x16x8
((1, 2, 2, 4)) in (h, w, d): a 512x512x241 volume becomes 31x64x64 tokens.

Encoding runs over overlapping windows of `window_size` wavelet frames (9 slices by default) with a stride of
f = the encoder's temporal factor: each window is encoded on its own, the first window keeps all its latent
frames and every later window only its last one. Memory is therefore flat in the number of slices, and the
latent depth is (d - 1) / 8 + 1. Decoding runs over the whole latent at once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from longseq.core.registry import Pretrained
from longseq.vision.btb3d.layers import Decoder, Encoder, haar_dwt3d, haar_patch, haar_unpatch
from longseq.vision.btb3d.lfq import LFQ, indices_to_codes


@dataclass(kw_only=True)
class BTB3DConfig:
    """The tokenizer's architecture. Defaults: the released 8x8x8 model."""

    in_channels: int = 1
    # encoder / decoder widths: filters * multiplier per stage; one spatial /2 between stages
    filters: int = 96
    channel_multipliers: tuple[int, ...] = (1, 2, 4)
    # temporal /2 at each stage transition (one entry fewer than channel_multipliers)
    temporal_downsample: tuple[bool, ...] = (True, True)
    num_res_blocks: int = 4
    norm_groups: int = 32
    # lookup-free quantization: a codebook of 2 ** token_bits ids
    token_bits: int = 18
    # encoding windows, in wavelet frames (2 slices each); window k starts at wavelet frame k * temporal factor
    window_size: int = 5
    commitment_weight: float = 0.25
    diversity_gamma: float = 1.0

    def __post_init__(self):
        self.channel_multipliers = tuple(int(m) for m in self.channel_multipliers)
        self.temporal_downsample = tuple(bool(t) for t in self.temporal_downsample)
        if len(self.channel_multipliers) < 1:
            raise ValueError("channel_multipliers needs at least one stage")
        if len(self.temporal_downsample) != len(self.channel_multipliers) - 1:
            raise ValueError(
                f"temporal_downsample needs {len(self.channel_multipliers) - 1} entries (one per stage transition), "
                f"got {len(self.temporal_downsample)}"
            )
        for width in [self.filters] + [self.filters * m for m in self.channel_multipliers]:
            if width % self.norm_groups:
                raise ValueError(f"width {width} is not divisible by norm_groups={self.norm_groups}")
        if not 1 <= self.token_bits <= 30:
            raise ValueError(f"token_bits must be in [1, 30], got {self.token_bits}")
        if self.window_size < 1 or (self.window_size - 1) % self.temporal_factor:
            raise ValueError(
                f"window_size - 1 must be a non-negative multiple of the temporal factor {self.temporal_factor}, "
                f"got window_size={self.window_size}"
            )

    @property
    def temporal_factor(self) -> int:
        """Latent frame stride of the encoder, in wavelet frames."""
        return 2 ** sum(self.temporal_downsample)

    @property
    def compression(self) -> tuple[int, int, int]:
        """Voxels per token along (d, h, w), the Haar step included."""
        spatial = 2 * 2 ** (len(self.channel_multipliers) - 1)
        return 2 * self.temporal_factor, spatial, spatial

    def token_grid(self, depth: int, height: int, width: int) -> tuple[int, int, int]:
        """(t, h, w) of the token grid of a (depth, height, width) volume, which `check_shape` must accept."""
        cd, ch, cw = self.compression
        return (depth - 1) // cd + 1, height // ch, width // cw

    def check_shape(self, depth: int, height: int, width: int) -> None:
        """Raise ValueError unless depth = 1 + k * (2 * temporal factor) and height, width are whole multiples."""
        cd, ch, cw = self.compression
        if depth < 1 or (depth - 1) % cd:
            raise ValueError(
                f"volume depth must be 1 + a multiple of {cd} slices (1, {1 + cd}, {1 + 2 * cd}, ...); got {depth}"
            )
        if height < ch or width < cw or height % ch or width % cw:
            raise ValueError(f"volume height and width must be positive multiples of {ch}; got {height}x{width}")


BTB3D_PRESETS: dict[str, BTB3DConfig] = {
    # The released configurations (configs/magvit2_3d_model_config_8x8x8.yaml and magvit2_3d_model_config.yaml).
    "btb3d-8x8x8": BTB3DConfig(),
    "btb3d-16x16x8": BTB3DConfig(channel_multipliers=(1, 2, 2, 4), temporal_downsample=(False, True, True)),
    # The parity fixture's shape: the narrowest widths the released code allows (GroupNorm has 32 groups).
    "btb3d-8x8x8-w32": BTB3DConfig(filters=32, channel_multipliers=(1, 1, 1), num_res_blocks=1, token_bits=6),
    # Tiny presets for tests and CPU training.
    "btb3d-tiny": BTB3DConfig(filters=8, channel_multipliers=(1, 2, 2), num_res_blocks=1, norm_groups=4, token_bits=8),
    "btb3d-tiny-16x16x8": BTB3DConfig(
        filters=8,
        channel_multipliers=(1, 1, 2, 2),
        temporal_downsample=(False, True, True),
        num_res_blocks=1,
        norm_groups=4,
        token_bits=8,
    ),
}


@dataclass
class Tokens:
    """The output of `BTB3D.tokenize`: ids (b, t, h, w) int64 and the quantized latent (b, bits, t, h, w)."""

    ids: torch.Tensor
    quantized: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


class BTB3D(Pretrained, nn.Module):
    """The BTB3D tokenizer: Haar front end, causal encoder, LFQ, causal decoder, inverse Haar."""

    model_type = "btb3d"

    def __init__(self, config: BTB3DConfig, *, device=None, dtype=None):
        super().__init__()
        self.config = config
        arch = {
            "filters": config.filters,
            "channel_multipliers": config.channel_multipliers,
            "temporal_downsample": config.temporal_downsample,
            "num_res_blocks": config.num_res_blocks,
            "norm_groups": config.norm_groups,
            "device": device,
            "dtype": dtype,
        }
        self.encoder = Encoder(in_channels=8 * config.in_channels, out_channels=config.token_bits, **arch)
        self.decoder = Decoder(in_channels=config.token_bits, out_channels=8 * config.in_channels, **arch)
        self.quantize = LFQ(
            bits=config.token_bits,
            commitment_weight=config.commitment_weight,
            diversity_gamma=config.diversity_gamma,
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected a volume (b, {self.config.in_channels}, d, h, w), got {tuple(x.shape)}")
        self.config.check_shape(*x.shape[2:])

    def encode(self, x: torch.Tensor, *, tiled: bool = True, progress: bool = False) -> torch.Tensor:
        """Continuous latent of a volume.

        Args:
            x: (b, c, d, h, w) with d = 1 + 8k (8x8x8 and 16x16x8 configs), values ~[-1, 1].
            tiled: encode in overlapping windows (flat memory in d; the released behaviour). False runs the
                encoder over all wavelet frames at once (memory grows with d; a different function of the input
                beyond the first window, because causal padding restarts in each window).
            progress: show a progress bar over the windows (on a terminal).
        Returns:
            (b, token_bits, (d - 1) / 8 + 1, h / s, w / s).
        """
        self._check_input(x)
        frames = (x.shape[2] + 1) // 2
        window, stride = self.config.window_size, self.config.temporal_factor
        if not tiled or frames <= window:
            return self.encoder(haar_patch(x))
        latents = []
        starts = range(0, frames - window + 1, stride)
        for start in tqdm(starts, desc="encoding windows", disable=not (progress and sys.stderr.isatty())):
            latent = self.encoder(self._window_frames(x, start, window))
            latents.append(latent if start == 0 else latent[:, :, -1:])
        return torch.cat(latents, dim=2)

    @staticmethod
    def _window_frames(x: torch.Tensor, start: int, window: int) -> torch.Tensor:
        """Wavelet frames [start, start + window) of `haar_patch(x)`, computed from their own slices only.

        haar_patch pairs slices (2i, 2i + 1) of [x_0, x_0, x_1, ...], i.e. original slices (2i - 1, 2i) with -1
        read as 0; only these 2 * window slices are touched, so the whole volume is never transformed at once.
        """
        first = 2 * start - 1
        idx = torch.arange(first, first + 2 * window, device=x.device).clamp_(min=0)
        return haar_dwt3d(x.index_select(2, idx))

    def quantize_latent(self, z: torch.Tensor, *, entropy_weight: float = 0.0) -> Tokens:
        quantized, ids, losses = self.quantize(z, entropy_weight=entropy_weight)
        return Tokens(ids=ids, quantized=quantized, losses=losses)

    def tokenize(self, x: torch.Tensor, *, tiled: bool = True, progress: bool = False) -> Tokens:
        """Volume (b, c, d, h, w) -> `Tokens` (ids (b, t, h', w'))."""
        return self.quantize_latent(self.encode(x, tiled=tiled, progress=progress))

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantized latent (b, bits, t, h, w) -> volume (b, c, 8 (t - 1) + 1, s h, s w), over all frames at once."""
        return haar_unpatch(self.decoder(quantized))

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (b, t, h, w) -> volume."""
        if ids.ndim != 4:
            raise ValueError(f"expected token ids (b, t, h, w), got {tuple(ids.shape)}")
        if ids.dtype.is_floating_point or int(ids.min()) < 0 or int(ids.max()) >= 2**self.config.token_bits:
            raise ValueError(f"token ids must be integers in [0, 2**{self.config.token_bits})")
        dtype = next(self.parameters()).dtype
        return self.decode(indices_to_codes(ids, self.config.token_bits, dtype))

    def forward(self, x: torch.Tensor, *, tiled: bool = True, entropy_weight: float = 0.0):
        """Reconstruct: returns (recon like x, `Tokens` with the quantizer's losses)."""
        tokens = self.quantize_latent(self.encode(x, tiled=tiled), entropy_weight=entropy_weight)
        return self.decode(tokens.quantized), tokens
