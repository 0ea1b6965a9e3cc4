"""Readable references for the short causal depthwise convolution (the `causal_conv1d` package's semantics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longseq.kernels._backend import up


def _activate(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    return F.silu(y) if activation in ("silu", "swish") else y


def causal_conv1d_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    return_final_states: bool = False,
    activation: str | None = None,
):
    """y[:, c, t] = act(bias[c] + sum_k weight[c, k] * x[:, c, t - (w - 1) + k]), x before t = 0 from
    ``initial_states`` (zeros when None).

    Args:
        x: (b, d, l). weight: (d, w). bias: (d,). initial_states: (b, d, w - 1).

    Returns:
        y (b, d, l) in x's dtype, and with ``return_final_states`` the last w - 1 inputs (b, d, w - 1).
    """
    dtype = x.dtype
    b, d, l = x.shape
    w = weight.shape[1]
    if initial_states is None:
        initial_states = x.new_zeros(b, d, w - 1)
    padded = up(torch.cat([initial_states.to(x.dtype), x], dim=-1))  # (b, d, w - 1 + l)
    y = F.conv1d(padded, up(weight).unsqueeze(1), None if bias is None else up(bias), groups=d)
    out = _activate(y, activation).to(dtype)
    if not return_final_states:
        return out
    return out, padded[..., padded.shape[-1] - (w - 1) :].to(dtype)


def causal_conv1d_update_ref(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """Decode step(s): append x to the rolling window ``conv_state`` (updated in place) and convolve.

    Args:
        x: (b, d) or (b, d, s) new inputs. conv_state: (b, d, k) with k >= w - 1, the last k inputs.
        weight: (d, w). bias: (d,).

    Returns:
        y with x's shape and dtype.
    """
    squeeze = x.dim() == 2
    if squeeze:
        x = x.unsqueeze(-1)
    d, w = weight.shape
    k, s = conv_state.shape[-1], x.shape[-1]
    window = torch.cat([conv_state.to(x.dtype), x], dim=-1)  # (b, d, k + s)
    conv_state.copy_(window[..., -k:])
    y = F.conv1d(up(window), up(weight).unsqueeze(1), None if bias is None else up(bias), groups=d)
    y = _activate(y[..., -s:], activation).to(x.dtype)
    return y.squeeze(-1) if squeeze else y
