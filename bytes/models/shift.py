"""The transformer of lucidrains' MEGABYTE-pytorch (0.3.x), which mblm runs for its transformer stages too.

It differs from our pre-norm `core.stack.MixerStack` in three ways, each needed to reproduce those packages'
checkpoints exactly:

- token shift (RWKV's, as MEGABYTE-pytorch calls it): before each sublayer's norm, channels
  ``[ceil(d/2), d)`` of position t are replaced by those of position t - 1 (zeros at the first position); the
  residual stream itself is not shifted;
- its RMSNorm, ``x / max(|x|_2 / sqrt(d), 1e-8) * g``, with no epsilon under the root (`ClampedRMSNorm`);
- the attention width is ``heads * head_dim``, independent of d.

Per layer: ``x = x + Attn(norm(shift(x)))``, ``x = x + Mlp(norm(shift(x)))``; then a final RMSNorm. Attention is
`core.attention.Attention` (causal, no biases, rotary "rotate half" on the full head dim, base 10000); the MLP is
`core.mlp.Mlp` (exact GELU, biases). The stack follows the mixer protocol of `core.block`, so a
`core.hierarchical.PatchDecoder` can cache it: the state keeps, per layer, the KV cache and the last input of
each sublayer (what the next position's shift reads).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from longseq.core.attention import Attention, KVCache
from longseq.core.mlp import Mlp


class ClampedRMSNorm(nn.Module):
    """MEGABYTE-pytorch's RMSNorm: y = x / max(|x|_2 / sqrt(d), eps) * weight, in float32 at least (x's dtype out)."""

    def __init__(self, hidden_size: int, *, eps: float = 1e-8, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d) -> (..., d)."""
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        rms = torch.linalg.vector_norm(wide, dim=-1, keepdim=True) * x.shape[-1] ** -0.5
        return (wide / rms.clamp(min=self.eps) * self.weight.to(wide.dtype)).to(x.dtype)


def token_shift(x: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
    """x (b, l, d) with channels [ceil(d/2), d) of position t taken from position t - 1; before the first
    position they come from ``previous`` (b, d), the input preceding x in a cached sequence, else they are 0."""
    keep = (x.shape[-1] + 1) // 2
    late = x[..., keep:]
    first = torch.zeros_like(late[:, :1]) if previous is None else previous[:, None, keep:]
    return torch.cat((x[..., :keep], torch.cat((first, late[:, :-1]), dim=1)), dim=-1)


@dataclass
class ShiftLayerState:
    """One layer's generation state: its KV cache and the last input (b, d) of each sublayer."""

    kv: KVCache
    attn_input: torch.Tensor | None = None
    mlp_input: torch.Tensor | None = None


class ShiftLayer(nn.Module):
    """x + Attn(norm(shift(x))), then x + Mlp(norm(shift(x))): (b, l, d) -> (b, l, d)."""

    def __init__(
        self,
        d_model: int,
        *,
        num_heads: int,
        head_dim: int,
        rotary: bool,
        mlp_ratio: float,
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.attn_norm = ClampedRMSNorm(d_model, **dd)
        self.attn = Attention(
            d_model,
            num_heads,
            head_dim=head_dim,
            qkv_proj_bias=False,
            out_proj_bias=False,
            rotary_emb_dim=head_dim if rotary else 0,
            dropout=dropout,
            **dd,
        )
        self.mlp_norm = ClampedRMSNorm(d_model, **dd)
        self.mlp = Mlp(d_model, round(mlp_ratio * d_model), activation="gelu", **dd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: ShiftLayerState | None = None) -> torch.Tensor:
        """x: (b, l, d) -> (b, l, d); with a state, continue the sequence it holds and update it."""
        if state is None:
            x = x + self.drop(self.attn(self.attn_norm(token_shift(x))))
            return x + self.drop(self.mlp(self.mlp_norm(token_shift(x))))
        shifted = token_shift(x, state.attn_input)
        state.attn_input = x[:, -1]
        x = x + self.drop(self.attn(self.attn_norm(shifted), state.kv))
        shifted = token_shift(x, state.mlp_input)
        state.mlp_input = x[:, -1]
        return x + self.drop(self.mlp(self.mlp_norm(shifted)))


class ShiftTransformer(nn.Module):
    """``n_layers`` `ShiftLayer`s and a final `ClampedRMSNorm`: (b, l, d) -> (b, l, d), with the mixer protocol.

    Args:
        d_model: width d.
        n_layers: number of layers.
        num_heads, head_dim: attention heads and their width (heads * head_dim need not equal d).
        rotary: rotary embeddings on queries and keys (MEGABYTE-pytorch's ``rel_pos``, mblm's ``attn_use_rot_embs``).
        mlp_ratio: MLP width / d (``ff_mult``, ``ff_multiplier``).
        max_seqlen: the longest sequence the stack will see (the KV cache's size).
        dropout: on attention probabilities and on each sublayer's output (training only).
    """

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        *,
        num_heads: int,
        head_dim: int,
        rotary: bool = True,
        mlp_ratio: float = 4.0,
        max_seqlen: int,
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.d_model = d_model
        self.max_seqlen = max_seqlen
        options = {"num_heads": num_heads, "head_dim": head_dim, "rotary": rotary, "mlp_ratio": mlp_ratio}
        self.layers = nn.ModuleList(
            ShiftLayer(d_model, **options, dropout=dropout, device=device, dtype=dtype) for _ in range(n_layers)
        )
        self.norm_f = ClampedRMSNorm(d_model, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, state: list[ShiftLayerState] | None = None) -> torch.Tensor:
        """x: (b, l, d) -> (b, l, d); with a state (from `init_state`), continue from it and update it."""
        for i, layer in enumerate(self.layers):
            x = layer(x, None if state is None else state[i])
        return self.norm_f(x)

    def init_state(
        self, batch_size: int, *, max_seqlen: int | None = None, device=None, dtype=None
    ) -> list[ShiftLayerState]:
        max_seqlen = self.max_seqlen if max_seqlen is None else max_seqlen
        return [
            ShiftLayerState(layer.attn.init_state(batch_size, max_seqlen=max_seqlen, device=device, dtype=dtype))
            for layer in self.layers
        ]

    def step(self, x: torch.Tensor, state: list[ShiftLayerState]) -> torch.Tensor:
        """One token: x (b, d) -> (b, d); the state advances in place."""
        return self(x[:, None], state)[:, 0]
