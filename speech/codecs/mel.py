"""A small mel-spectrogram codec the project trains itself on CPU, so that speech runs fully offline.

waveform -> log-mel (hop 10 ms) -> conv encoder (downsample by ``downsample``) -> residual VQ -> conv decoder
-> log-mel -> linear spectrogram (least squares through the mel filterbank) -> Griffin-Lim -> waveform.
With the defaults: 24 kHz audio, 25 code frames per second, 8 codebooks of 256 codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.registry import Family, Pretrained
from longseq.speech.codecs.base import Codec
from longseq.speech.codecs.rvq import ResidualVQ

# log-mel values of speech lie roughly in [-11.5, 2]; this maps them near [-1, 1] for the networks.
LOG_MEL_CENTER = -5.0
LOG_MEL_SCALE = 3.0
LOG_FLOOR = 1e-5


@dataclass(kw_only=True)
class MelCodecConfig:
    # signal
    sample_rate: int = 24_000
    n_fft: int = 1024
    hop_length: int = 240
    n_mels: int = 80
    # networks
    downsample: int = 4
    channels: int = 128
    n_res_blocks: int = 2
    latent_dim: int = 64
    # quantizer
    n_codebooks: int = 8
    codebook_size: int = 256
    quantizer_dropout: float = 0.5
    # waveform
    vocoder: Literal["griffin_lim"] = "griffin_lim"
    griffin_lim_iters: int = 32
    griffin_lim_power: float = 1.0

    def __post_init__(self):
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "channels", "latent_dim", "griffin_lim_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.n_res_blocks < 0:
            raise ValueError(f"n_res_blocks must be >= 0; got {self.n_res_blocks}")
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must lie in [0, 1]; got {self.quantizer_dropout}")
        if not self.griffin_lim_power > 0:
            raise ValueError(f"griffin_lim_power must be positive; got {self.griffin_lim_power}")
        if self.n_fft < self.hop_length or self.n_fft % 2:
            raise ValueError(f"n_fft ({self.n_fft}) must be even and at least hop_length ({self.hop_length})")
        if self.downsample != 1 and (self.downsample < 1 or self.downsample % 2):
            raise ValueError(f"downsample must be 1 or even; got {self.downsample}")
        if self.n_codebooks < 1 or self.codebook_size < 2:
            raise ValueError("need at least one codebook of at least two codes")


class ResBlock(nn.Module):
    """x + conv(gelu(conv(gelu(x)))), kernel 3, the first conv dilated."""

    def __init__(self, channels: int, *, dilation: int = 1, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation, **dd)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t) -> (b, c, t)."""
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


def _res_stack(channels: int, n: int, dd: dict) -> nn.Sequential:
    return nn.Sequential(*(ResBlock(channels, dilation=3**i, **dd) for i in range(n)))


class MelEncoder(nn.Module):
    """Normalised log-mel (b, n_mels, f) -> latent (b, latent_dim, f / downsample)."""

    def __init__(
        self,
        *,
        n_mels: int,
        channels: int,
        latent_dim: int,
        downsample: int,
        n_res_blocks: int,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv_in = nn.Conv1d(n_mels, channels, 3, padding=1, **dd)
        self.blocks_in = _res_stack(channels, n_res_blocks, dd)
        if downsample > 1:
            self.down = nn.Conv1d(channels, channels, 2 * downsample, stride=downsample, padding=downsample // 2, **dd)
        else:
            self.down = nn.Identity()
        self.blocks_out = _res_stack(channels, n_res_blocks, dd)
        self.conv_out = nn.Conv1d(channels, latent_dim, 1, **dd)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.blocks_in(self.conv_in(mel))
        x = self.blocks_out(self.down(F.gelu(x)))
        return self.conv_out(F.gelu(x))


class MelDecoder(nn.Module):
    """Latent (b, latent_dim, t) -> normalised log-mel (b, n_mels, t * downsample)."""

    def __init__(
        self,
        *,
        n_mels: int,
        channels: int,
        latent_dim: int,
        downsample: int,
        n_res_blocks: int,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv_in = nn.Conv1d(latent_dim, channels, 3, padding=1, **dd)
        self.blocks_in = _res_stack(channels, n_res_blocks, dd)
        if downsample > 1:
            self.up = nn.ConvTranspose1d(
                channels, channels, 2 * downsample, stride=downsample, padding=downsample // 2, **dd
            )
        else:
            self.up = nn.Identity()
        self.blocks_out = _res_stack(channels, n_res_blocks, dd)
        self.conv_out = nn.Conv1d(channels, n_mels, 3, padding=1, **dd)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.blocks_in(self.conv_in(z))
        x = self.blocks_out(self.up(F.gelu(x)))
        return self.conv_out(F.gelu(x))


class LogMel(nn.Module):
    """Waveform (b, 1, n) -> normalised log-mel (b, n_mels, n // hop_length), and back to a waveform."""

    def __init__(self, *, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, device=None):
        super().__init__()
        import torchaudio.functional as AF

        self.n_fft, self.hop_length = n_fft, hop_length
        # Fixed functions of the config, computed on the CPU whatever the default device (the meta device has
        # no values to compute them from), then moved.
        device = torch.get_default_device() if device is None else device
        with torch.device("cpu"):
            fbank = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, "slaney", "slaney")
            pinv = torch.linalg.pinv(fbank.T)
        self.register_buffer("fbank", fbank.to(device), persistent=False)  # (n_freqs, n_mels)
        self.register_buffer("fbank_pinv", pinv.to(device), persistent=False)  # (n_freqs, n_mels)
        self.register_buffer("window", torch.hann_window(n_fft, device=device), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        frames = wav.shape[-1] // self.hop_length
        spec = torch.stft(
            wav.reshape(-1, wav.shape[-1]), self.n_fft, self.hop_length, window=self.window, return_complex=True
        ).abs()
        mel = (spec.transpose(1, 2) @ self.fbank).transpose(1, 2)[..., :frames]
        return (mel.clamp_min(LOG_FLOOR).log() - LOG_MEL_CENTER) / LOG_MEL_SCALE

    def invert(self, log_mel: torch.Tensor, *, n_iter: int, power: float) -> torch.Tensor:
        """Normalised log-mel (b, n_mels, f) -> waveform (b, 1, f * hop_length) by Griffin-Lim."""
        import torchaudio.functional as AF

        mel = (log_mel.float() * LOG_MEL_SCALE + LOG_MEL_CENTER).exp()
        # Minimum-norm least-squares magnitudes through the filterbank, clipped at zero.
        spec = (self.fbank_pinv @ mel).clamp_min(0.0)
        # f frames of a centred STFT span (f - 1) hops; one repeated frame makes the output f hops long.
        spec = torch.cat([spec, spec[..., -1:]], dim=-1)
        length = log_mel.shape[-1] * self.hop_length
        # Raising magnitudes to a power > 1 before Griffin-Lim sharpens harmonics (Tacotron's trick).
        wav = AF.griffinlim(
            spec.pow(power), self.window, self.n_fft, self.hop_length, self.n_fft, 1.0, n_iter, 0.99, length, False
        )
        return wav.unsqueeze(1)


class MelCodec(Pretrained, Codec):
    """The trainable mel codec (see the module docstring).

    ``forward`` is the training pass: wav (b, 1, n) -> (reconstructed log-mel, target log-mel, codes,
    commitment loss). `encode` / `decode` follow the `Codec` interface.
    """

    model_type = "mel_codec"

    def __init__(self, config: MelCodecConfig, *, device=None, dtype=None):
        super().__init__()
        self.config = config
        dd = {"device": device, "dtype": dtype}
        self.sample_rate = config.sample_rate
        self.frame_rate = config.sample_rate / (config.hop_length * config.downsample)
        self.n_codebooks = config.n_codebooks
        self.codebook_size = config.codebook_size
        self.log_mel = LogMel(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            device=device,
        )
        sizes = {
            "n_mels": config.n_mels,
            "channels": config.channels,
            "latent_dim": config.latent_dim,
            "downsample": config.downsample,
            "n_res_blocks": config.n_res_blocks,
        }
        self.encoder = MelEncoder(**sizes, **dd)
        self.quantizer = ResidualVQ(
            config.latent_dim,
            config.n_codebooks,
            config.codebook_size,
            quantizer_dropout=config.quantizer_dropout,
            **dd,
        )
        self.decoder = MelDecoder(**sizes, **dd)

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (b, 1, n) -> normalised log-mel (b, n_mels, f) with f a multiple of ``downsample`` (zero-padded)."""
        log_mel = self.log_mel(wav)
        pad = -log_mel.shape[-1] % self.config.downsample
        floor = (torch.tensor(LOG_FLOOR).log() - LOG_MEL_CENTER) / LOG_MEL_SCALE
        return F.pad(log_mel, (0, pad), value=float(floor))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        target = self.mel(wav)
        quantized, codes, commit = self.quantizer(self.encoder(target))
        return self.decoder(quantized), target, codes, commit

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        return self.quantizer.encode(self.encoder(self.mel(wav)))

    def decode_mel(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (b, k, t) -> normalised log-mel (b, n_mels, t * downsample)."""
        return self.decoder(self.quantizer.decode(codes))

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        log_mel = self.decode_mel(codes)
        return self.log_mel.invert(log_mel, n_iter=self.config.griffin_lim_iters, power=self.config.griffin_lim_power)


PRESETS = {
    "mel-24k": MelCodecConfig(),
    "mel-tiny": MelCodecConfig(channels=16, n_res_blocks=1, latent_dim=8, n_codebooks=4, codebook_size=16),
}


def example(model: MelCodec) -> tuple[torch.Tensor]:
    """The training pass on two 0.2-s noise clips (b, 1, n)."""
    return (0.1 * torch.randn(2, 1, round(0.2 * model.sample_rate)),)


FAMILY = Family(model_class=MelCodec, config_class=MelCodecConfig, presets=PRESETS, example=example)
