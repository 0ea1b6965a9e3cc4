"""CLaM-TTS's Mel-VAE: the mel codec with a probabilistic residual quantizer at a low frame rate.

The mel front end, convolutional encoder / decoder and Griffin-Lim waveform stage are the mel codec's
(`speech.codecs.mel`); the quantizer is `ProbabilisticRVQ` (sigma^2 is part of the codec: the latent language
model's Gaussians share it). With the defaults: 24 kHz, log-mel at 100 Hz downsampled 8x to 12.5 latent
frames per second (the paper's codec runs near 10 Hz), 16 codebooks of 256 codes (the paper: 32 of 1024).

Differences from the paper, for a codec that trains on a CPU in an hour: the encoder and decoder are not causal
and have no ConvNeXt post-net, the loss has no adversarial term (L1 on the log-mel plus commitment), and the
vocoder is Griffin-Lim (BigVGAN needs downloaded weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from longseq.core.registry import Family
from longseq.speech.codecs.mel import MelCodec, MelCodecConfig, example
from longseq.speech.codecs.prob_rvq import ProbabilisticRVQ


@dataclass(kw_only=True)
class MelVAEConfig(MelCodecConfig):
    downsample: int = 8
    n_codebooks: int = 16
    codebook_size: int = 256
    quantizer_dropout: float = 0.0
    """Must stay 0: the latent language model emits every depth of a frame at once."""
    commitment: float = 0.25
    quantizer_decay: float = 0.99

    def __post_init__(self):
        super().__post_init__()
        if self.quantizer_dropout != 0.0:
            raise ValueError("the Mel-VAE quantizes at full depth; quantizer_dropout must be 0")
        if not self.commitment >= 0:
            raise ValueError(f"commitment must be >= 0; got {self.commitment}")
        if not 0.0 < self.quantizer_decay < 1.0:
            raise ValueError(f"quantizer_decay must lie in (0, 1); got {self.quantizer_decay}")


class MelVAE(MelCodec):
    """The Mel-VAE codec: `MelCodec` whose quantizer is a `ProbabilisticRVQ` (same encode / decode / forward)."""

    model_type = "mel_vae"

    def __init__(self, config: MelVAEConfig, *, device=None, dtype=None):
        super().__init__(config, device=device, dtype=dtype)
        self.quantizer = ProbabilisticRVQ(
            config.latent_dim,
            config.n_codebooks,
            config.codebook_size,
            decay=config.quantizer_decay,
            commitment=config.commitment,
            device=device,
            dtype=dtype,
        )

    @property
    def variance(self) -> torch.Tensor:
        """sigma^2 of p(z | codes) (a 0-dim tensor)."""
        return self.quantizer.variance


PRESETS = {
    "mel-vae": MelVAEConfig(),
    "mel-vae-tiny": MelVAEConfig(channels=16, n_res_blocks=1, latent_dim=8, n_codebooks=4, codebook_size=16),
}


FAMILY = Family(model_class=MelVAE, config_class=MelVAEConfig, presets=PRESETS, example=example)
