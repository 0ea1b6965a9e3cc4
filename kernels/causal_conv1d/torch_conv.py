"""The torch backend of the short causal conv.

The full-sequence conv stays `F.conv1d` (depthwise): it measured faster on the CPU than shifted sums, forward
and backward (benchmarks/RESULTS.md). The decode update is op-bound, where `F.conv1d` on a few columns costs
several times a direct window product, so it gets its own formulation here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longseq.kernels._backend import up


def causal_conv1d_update_torch(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """Same contract as `causal_conv1d_update_ref`: y_j = bias + <weight, window ending at x_j>."""
    squeeze = x.dim() == 2
    xs = x.unsqueeze(-1) if squeeze else x  # (b, d, s)
    w, k, s = weight.shape[1], conv_state.shape[-1], xs.shape[-1]
    window = torch.cat([conv_state[..., k - (w - 1) :].to(xs.dtype), xs], dim=-1)  # (b, d, w - 1 + s)
    y = (up(window).unfold(-1, w, 1) * up(weight)[:, None, :]).sum(-1)  # (b, d, s)
    if bias is not None:
        y = y + up(bias)[:, None]
    if activation is not None:
        y = F.silu(y)
    if s >= k:
        conv_state.copy_(xs[..., s - k :])
    else:
        conv_state.copy_(torch.cat([conv_state[..., s:], xs.to(conv_state.dtype)], dim=-1))
    y = y.to(x.dtype)
    return y.squeeze(-1) if squeeze else y
