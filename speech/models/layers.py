"""Transformer pieces of the VALL-E family, built on `core.attention.Attention`.

Pre-norm layers (``x += attn(norm1(x)); x += mlp(norm2(x))``) whose norms are either plain LayerNorms or
adaptive LayerNorms conditioned on a stage embedding (the VALL-E NAR), scaled sinusoidal positions per stream.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from longseq.core.attention import Attention, KVCache
from longseq.core.mlp import Mlp
from longseq.core.norm import LayerNorm


class SinePosition(nn.Module):
    """x + alpha * pe, pe interleaved: pe[p, 2i] = sin(p w_i), pe[p, 2i+1] = cos(p w_i), w_i = 10000^(-2i/d).

    ``alpha`` is learned (VALL-E's SinePositionalEmbedding with ``alpha=True``); dropout follows.
    """

    def __init__(self, d_model: int, *, dropout: float = 0.0, device=None, dtype=None):
        super().__init__()
        self.d_model = d_model
        self.alpha = nn.Parameter(torch.ones(1, device=device, dtype=dtype))
        self.drop = nn.Dropout(dropout)

    def encoding(self, positions: torch.Tensor) -> torch.Tensor:
        """positions (...) -> (..., d) float32."""
        freqs = torch.exp(
            torch.arange(0, self.d_model, 2, device=positions.device, dtype=torch.float32)
            * (-math.log(10000.0) / self.d_model)
        )
        angles = positions.float().unsqueeze(-1) * freqs
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)

    def forward(self, x: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        """x: (b, l, d) at positions offset .. offset + l - 1."""
        positions = torch.arange(offset, offset + x.shape[1], device=x.device)
        return self.drop(x + self.alpha * self.encoding(positions).to(x.dtype))


class AdaptiveLayerNorm(nn.Module):
    """w * LayerNorm(x) + b with (w, b) = project_layer(condition) (scale first), as VALL-E's NAR."""

    def __init__(self, d_model: int, *, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.d_model = d_model
        self.project_layer = nn.Linear(d_model, 2 * d_model, device=device, dtype=dtype)
        self.norm = LayerNorm(d_model, eps=eps, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """x: (b, l, d); condition: (b, d) or (1, d)."""
        weight, bias = self.project_layer(condition).unsqueeze(1).split(self.d_model, dim=-1)
        return weight * self.norm(x) + bias


class DecoderLayer(nn.Module):
    """Pre-norm self-attention + ReLU feed-forward (torch's ``TransformerEncoderLayer(norm_first=True)``).

    Args:
        adaptive: condition both norms on a vector (`AdaptiveLayerNorm`) instead of plain LayerNorms.
        dropout: on attention probabilities and on both branch outputs.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        ffn_dim: int,
        dropout: float = 0.0,
        adaptive: bool = False,
        eps: float = 1e-5,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        norm = AdaptiveLayerNorm if adaptive else LayerNorm
        self.adaptive = adaptive
        self.norm1 = norm(d_model, eps=eps, **dd)
        self.attn = Attention(d_model, n_heads, causal=False, dropout=dropout, **dd)
        self.norm2 = norm(d_model, eps=eps, **dd)
        self.mlp = Mlp(d_model, ffn_dim, activation="relu", **dd)
        self.drop = nn.Dropout(dropout)

    def _norm(self, norm: nn.Module, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return norm(x, condition) if self.adaptive else norm(x)

    def forward(
        self,
        x: torch.Tensor,
        *,
        condition: torch.Tensor | None = None,
        state: KVCache | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (b, l, d) -> (b, l, d); masks as in `core.attention.Attention.forward`."""
        h = self._norm(self.norm1, x, condition)
        x = x + self.drop(self.attn(h, state, attn_mask=attn_mask, key_padding_mask=key_padding_mask))
        return x + self.drop(self.mlp(self._norm(self.norm2, x, condition)))


class Decoder(nn.Module):
    """A stack of `DecoderLayer` and a final norm (adaptive when the layers are)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_layers: int,
        *,
        ffn_dim: int,
        dropout: float = 0.0,
        adaptive: bool = False,
        eps: float = 1e-5,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.adaptive = adaptive
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, n_heads, ffn_dim=ffn_dim, dropout=dropout, adaptive=adaptive, eps=eps, **dd)
            for _ in range(n_layers)
        )
        self.norm = (AdaptiveLayerNorm if adaptive else LayerNorm)(d_model, eps=eps, **dd)

    def init_state(self, batch_size: int, *, max_seqlen: int | None = None) -> list[KVCache]:
        return [layer.attn.init_state(batch_size, max_seqlen=max_seqlen) for layer in self.layers]

    def forward(
        self,
        x: torch.Tensor,
        *,
        condition: torch.Tensor | None = None,
        state: list[KVCache] | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(
                x,
                condition=condition,
                state=None if state is None else state[i],
                attn_mask=attn_mask,
                key_padding_mask=key_padding_mask,
            )
        return self.norm(x, condition) if self.adaptive else self.norm(x)


def prefix_lm_mask(n_text: int, n_audio: int, *, device=None) -> torch.Tensor:
    """(l, l) bool, True = may attend: text sees all text and no audio; audio sees all text and audio <= itself."""
    l = n_text + n_audio
    mask = torch.ones(l, l, dtype=torch.bool, device=device).tril()
    mask[:n_text, :n_text] = True
    return mask
