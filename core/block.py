"""The mixer-agnostic pre-norm residual block, and the mixer protocol every sequence mixer follows.

A *mixer* maps (b, l, d) -> (b, l, d) and, when causal, can continue from a cached state:

    forward(x, state=None)       x (b, l, d). With a state: continue from it and update it in place
                                 (prefill, chunked decoding). Without: a fresh sequence, nothing cached.
    init_state(batch_size, *, max_seqlen=None, device=None, dtype=None) -> state
    step(x, state)               x (b, d) -> (b, d), one token; the state is updated in place.

A loop of `step` calls equals the parallel `forward` (tested for every recurrent mixer).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from longseq.core.norm import add_norm


class Mixer(Protocol):
    def forward(self, x: torch.Tensor, state: Any | None = None) -> torch.Tensor: ...

    def init_state(self, batch_size: int, *, max_seqlen: int | None = None, device=None, dtype=None) -> Any: ...

    def step(self, x: torch.Tensor, state: Any) -> torch.Tensor: ...


class Block(nn.Module):
    """Add -> Norm -> Mixer [-> Add -> Norm -> MLP], as mamba_ssm's `Block`.

    The block takes and returns the residual stream separately from the branch output, so the add of one
    block and the norm of the next fuse into one step (``add_norm``), and the residual can stay in float32.
    Parameter names (mixer, norm, mlp, norm2) match mamba_ssm checkpoints.

    Args:
        mixer: a module following the mixer protocol above.
        norm: the norm before the mixer.
        mlp, norm2: an optional feed-forward sub-block and its norm.
        residual_in_fp32: keep the residual stream in float32.
        dropout: dropout on the branch outputs before they join the residual stream.
    """

    def __init__(
        self,
        mixer: nn.Module,
        norm: nn.Module,
        *,
        mlp: nn.Module | None = None,
        norm2: nn.Module | None = None,
        residual_in_fp32: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if (mlp is None) != (norm2 is None):
            raise ValueError("mlp and norm2 go together")
        self.mixer = mixer
        self.norm = norm
        self.mlp = mlp
        self.norm2 = norm2
        self.residual_in_fp32 = residual_in_fp32
        self.drop = nn.Dropout(dropout)

    def _finish(self, x: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mlp is not None:
            x, residual = add_norm(self.drop(x), residual, self.norm2, residual_in_fp32=self.residual_in_fp32)
            x = self.mlp(x)
        return self.drop(x), residual

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None, state: Any | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x, residual: (b, l, d) -> (branch output, residual stream), both (b, l, d)."""
        x, residual = add_norm(x, residual, self.norm, residual_in_fp32=self.residual_in_fp32)
        x = self.mixer(x) if state is None else self.mixer(x, state)
        return self._finish(x, residual)

    def step(self, x: torch.Tensor, residual: torch.Tensor | None, state: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """One token: x, residual (b, d) -> (branch output, residual stream), both (b, d)."""
        x, residual = add_norm(x, residual, self.norm, residual_in_fp32=self.residual_in_fp32)
        return self._finish(self.mixer.step(x, state), residual)
