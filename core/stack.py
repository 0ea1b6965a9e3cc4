"""A stack of pre-norm residual blocks over any core mixer, with a final norm, following the mixer protocol.

`MixerStack` is what one stage of a hierarchical decoder runs (and any model that needs "n layers of mixer X"):
``n_layers`` x `core.block.Block` (Add -> Norm -> Mixer [-> Add -> Norm -> MLP]) and a final norm. Its state is
the list of its mixers' states, so a loop of `step` equals `forward` whenever each mixer's does.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from longseq.core.attention import Attention
from longseq.core.block import Block
from longseq.core.hyena import HyenaOperator
from longseq.core.mlp import Mlp
from longseq.core.norm import add_norm, make_norm
from longseq.core.ssm import Mamba, Mamba2

MixerKind = Literal["attention", "mamba", "mamba2", "hyena"]
MIXER_KINDS: tuple[str, ...] = ("attention", "mamba", "mamba2", "hyena")


def make_mixer(
    kind: MixerKind,
    d_model: int,
    *,
    max_seqlen: int,
    num_heads: int = 4,
    num_heads_kv: int | None = None,
    rotary: bool = True,
    window: int | None = None,
    d_state: int = 16,
    d_conv: int = 4,
    expand: int = 2,
    headdim: int = 64,
    chunk_size: int = 128,
    device=None,
    dtype=None,
) -> nn.Module:
    """One causal mixer of the given kind.

    Args:
        kind: "attention" (`core.attention.Attention`, no projection biases), "mamba" (`core.ssm.Mamba`),
            "mamba2" (`core.ssm.Mamba2`) or "hyena" (`core.hyena.HyenaOperator`).
        max_seqlen: the longest sequence the mixer will see (Hyena's ``l_max``).
        num_heads, num_heads_kv, rotary, window: attention heads, KV heads, rotary on the full head dim, sliding
            window.
        d_state, d_conv, expand: Mamba / Mamba2 sizes; headdim: Mamba2 head width.
        chunk_size: Mamba2's SSD chunk (capped at max_seqlen; it changes speed, not results; 64-128 suits CPUs).
    """
    dd = {"device": device, "dtype": dtype}
    if kind == "attention":
        head_dim = d_model // num_heads
        return Attention(
            d_model,
            num_heads,
            num_heads_kv=num_heads_kv,
            window=window,
            qkv_proj_bias=False,
            out_proj_bias=False,
            rotary_emb_dim=head_dim if rotary else 0,
            **dd,
        )
    if kind == "mamba":
        return Mamba(d_model, d_state=d_state, d_conv=d_conv, expand=expand, **dd)
    if kind == "mamba2":
        chunk = min(chunk_size, max_seqlen)
        return Mamba2(d_model, d_state=d_state, d_conv=d_conv, expand=expand, headdim=headdim, chunk_size=chunk, **dd)
    if kind == "hyena":
        return HyenaOperator(d_model, l_max=max(max_seqlen, 2), **dd)
    raise ValueError(f"unknown mixer {kind!r}; expected one of {', '.join(MIXER_KINDS)}")


class MixerStack(nn.Module):
    """``n_layers`` pre-norm blocks of one mixer kind, then a final norm: (b, l, d) -> (b, l, d).

    Args:
        d_model: width d.
        n_layers: number of blocks.
        mixer: the mixer kind (see `make_mixer`, which also takes the mixer options below).
        max_seqlen: the longest sequence the stack will see.
        mlp_ratio: hidden width of each block's MLP as a multiple of d (0: no MLP, as in Mamba stacks).
        norm: "rms" or "layer".
        final_norm: end with a norm (False: the stack returns the residual stream, as mambapy's `Mamba`).
        dropout: on each block's branch outputs.
    """

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        *,
        mixer: MixerKind = "attention",
        max_seqlen: int,
        num_heads: int = 4,
        num_heads_kv: int | None = None,
        rotary: bool = True,
        window: int | None = None,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 64,
        mlp_ratio: float = 4.0,
        norm: Literal["rms", "layer"] = "rms",
        final_norm: bool = True,
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        dd = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.max_seqlen = max_seqlen
        hidden = round(mlp_ratio * d_model)
        options = {
            "max_seqlen": max_seqlen,
            "num_heads": num_heads,
            "num_heads_kv": num_heads_kv,
            "rotary": rotary,
            "window": window,
            "d_state": d_state,
            "d_conv": d_conv,
            "expand": expand,
            "headdim": headdim,
        }
        self.layers = nn.ModuleList(
            Block(
                make_mixer(mixer, d_model, **options, **dd),
                make_norm(norm, d_model, **dd),
                mlp=Mlp(d_model, hidden, activation="gelu", **dd) if hidden else None,
                norm2=make_norm(norm, d_model, **dd) if hidden else None,
                dropout=dropout,
            )
            for _ in range(n_layers)
        )
        self.norm_f = make_norm(norm, d_model, **dd) if final_norm else nn.Identity()

    def forward(self, x: torch.Tensor, state: list[Any] | None = None) -> torch.Tensor:
        """x: (b, l, d) -> (b, l, d); with a state (from `init_state`), continue from it and update it."""
        residual = None
        for i, layer in enumerate(self.layers):
            x, residual = layer(x, residual, None if state is None else state[i])
        return add_norm(x, residual, self.norm_f)[0]

    def init_state(self, batch_size: int, *, max_seqlen: int | None = None, device=None, dtype=None) -> list[Any]:
        """One mixer state per layer."""
        max_seqlen = self.max_seqlen if max_seqlen is None else max_seqlen
        return [
            layer.mixer.init_state(batch_size, max_seqlen=max_seqlen, device=device, dtype=dtype)
            for layer in self.layers
        ]

    def step(self, x: torch.Tensor, state: list[Any]) -> torch.Tensor:
        """One token: x (b, d) -> (b, d); every layer's state advances in place."""
        residual = None
        for layer, layer_state in zip(self.layers, state):
            x, residual = layer.step(x, residual, layer_state)
        return add_norm(x, residual, self.norm_f)[0]
