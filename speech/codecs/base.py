"""The interface every audio codec follows: waveform <-> discrete codes."""

from __future__ import annotations

import torch
from torch import nn

from longseq.core.io import InputError


class Codec(nn.Module):
    """A neural audio codec: mono waveforms at ``sample_rate`` <-> codes from ``n_codebooks`` residual codebooks.

    Subclasses set the four attributes and implement `_encode` / `_decode`. Codes are int64 (b, k, t) with
    k <= n_codebooks (a prefix of the residual stack) and values in [0, codebook_size); t frames at
    ``frame_rate`` per second.
    """

    sample_rate: int
    frame_rate: float
    n_codebooks: int
    codebook_size: int

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (b, 1, n) or (1, n) float in [-1, 1] -> codes (b, n_codebooks, t) int64, on the codec's device."""
        if wav.dim() == 2:
            wav = wav.unsqueeze(0)
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise InputError(f"codec input must be mono (b, 1, n); got shape {tuple(wav.shape)}")
        if wav.shape[-1] < self.samples_per_frame:
            raise InputError(f"audio of {wav.shape[-1]} samples is shorter than one codec frame")
        return self._encode(wav.float().to(next(self.parameters()).device))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (b, k, t) int64 with 1 <= k <= n_codebooks -> wav (b, 1, n) float."""
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.n_codebooks:
            raise InputError(f"codes must be (b, k <= {self.n_codebooks}, t); got shape {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise InputError(f"codes must lie in [0, {self.codebook_size}); got {codes.min()}..{codes.max()}")
        return self._decode(codes.long())

    @property
    def samples_per_frame(self) -> int:
        return round(self.sample_rate / self.frame_rate)

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
