"""The torch backend of the short causal conv.

The full-sequence conv in the (b, d, l) layout stays `F.conv1d` (depthwise): there it measured faster on the CPU
than shifted sums, forward and backward (benchmarks/RESULTS.md). In the (b, l, d) layout a Linear produces, the
shifted sums run over contiguous rows and need neither the transposed copy nor the padded input that `F.conv1d`
does (the CPU paths of HyenaOperator and Mamba, `causal_conv1d_channels_last`). The decode update is op-bound,
where `F.conv1d` on a few columns costs several times a direct window product, so it gets its own formulation here.
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


def causal_conv1d_channels_last(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str | None = None
) -> torch.Tensor:
    """`causal_conv1d_ref` without states in the (b, l, d) layout a Linear produces: w shifted multiply-adds over
    contiguous rows, with no transposed copy and no padded input.

    y[:, t, c] = act(bias[c] + sum_k weight[c, k] x[:, t - (w - 1) + k, c]), zeros before t = 0.

    Args:
        x: (b, l, d), any strides. weight: (d, w). bias: (d,). activation: None, "silu" or "swish".

    Returns:
        y (b, l, d) in x's dtype.
    """
    w, l = weight.shape[1], x.shape[1]
    x32, w32 = up(x), up(weight)
    y = x32 * w32[:, w - 1] if bias is None else torch.addcmul(up(bias), x32, w32[:, w - 1])
    for lag in range(1, min(w, l)):
        y[:, lag:].addcmul_(x32[:, :-lag], w32[:, w - 1 - lag])
    if activation is not None:
        y = F.silu(y)
    return y.to(x.dtype)
