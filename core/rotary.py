"""Rotary position embeddings (RoFormer), with flash-attn's `RotaryEmbedding` conventions.

A pair of features (x1, x2) at position t is rotated by the angle t * inv_freq[i]:

    x1' = x1 cos - x2 sin,    x2' = x2 cos + x1 sin,    inv_freq[i] = base^(-2i / dim)

Non-interleaved (GPT-NeoX, the default) pairs feature i with feature i + dim/2; interleaved (GPT-J) pairs
features 2i and 2i+1. Only the first ``dim`` features of each head are rotated (partial rotary); the rest
pass through. Cached decoding passes the position of the first token (``offset``) so that a token gets the
same rotation whether it is processed in a full sequence or one step at a time.
"""

from __future__ import annotations

import torch
from torch import nn


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, interleaved: bool = False) -> torch.Tensor:
    """Apply the rotation to the first ``2 * cos.shape[-1]`` features of x.

    Args:
        x: (b, l, h, p).
        cos, sin: (l, r/2) or (b, l, r/2) with r <= p the rotated width, in float32.

    Returns:
        (b, l, h, p) in x's dtype.
    """
    half = cos.shape[-1]
    rotary, rest = x[..., : 2 * half], x[..., 2 * half :]
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # broadcast over heads
    r = rotary.float()
    if interleaved:
        x1, x2 = r[..., 0::2], r[..., 1::2]
        out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
    else:
        x1, x2 = r[..., :half], r[..., half:]
        out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return torch.cat((out.to(x.dtype), rest), dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotary embedding of width ``dim`` (even, at most the head dim). No learned parameters.

    Args:
        dim: number of rotated features per head.
        base: the frequency base (10000 in RoFormer / GPT-NeoX / Llama).
        interleaved: GPT-J pairing (2i, 2i+1) instead of GPT-NeoX pairing (i, i + dim/2).
    """

    def __init__(self, dim: int, *, base: float = 10000.0, interleaved: bool = False, device=None):
        super().__init__()
        if dim <= 0 or dim % 2:
            raise ValueError(f"rotary dim must be a positive even number, got {dim}")
        self.dim = dim
        self.base = base
        self.interleaved = interleaved
        inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
        # Not persistent: derived from (dim, base), so checkpoints carry no rotary tensors.
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cos: torch.Tensor | None = None
        self._sin: torch.Tensor | None = None

    def _cos_sin(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin tables for positions [0, length), cached and grown by doubling."""
        if self._cos is None or self._cos.shape[0] < length or self._cos.device != device:
            size = max(length, 2 * (0 if self._cos is None else self._cos.shape[0]), 256)
            t = torch.arange(size, device=device, dtype=torch.float32)
            freqs = torch.outer(t, self.inv_freq.to(device))
            self._cos, self._sin = freqs.cos(), freqs.sin()
        return self._cos, self._sin

    def forward(self, q: torch.Tensor, k: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate queries and keys of positions offset, offset + 1, ...

        Args:
            q: (b, l, h, p); k: (b, l, h_kv, p).
            offset: position of the first token (the number of tokens already in a KV cache).
        """
        length = q.shape[1]
        cos, sin = self._cos_sin(offset + length, q.device)
        cos, sin = cos[offset : offset + length], sin[offset : offset + length]
        return rotate(q, cos, sin, interleaved=self.interleaved), rotate(k, cos, sin, interleaved=self.interleaved)
