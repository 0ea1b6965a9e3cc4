"""Autograd glue for the Triton short causal conv (imports triton; loaded only when the triton backend runs)."""

from __future__ import annotations

import torch

from longseq.kernels.causal_conv1d import triton_kernels as tk


class CausalConv1dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, initial_states, silu):
        weight = weight.contiguous()  # the kernels index weight (d, w) and bias (d,) as contiguous
        bias = None if bias is None else bias.contiguous()
        y = tk.conv_fwd(x, weight, bias, initial_states, silu)
        ctx.save_for_backward(x, weight, bias, initial_states)
        ctx.silu = silu
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias, initial_states = ctx.saved_tensors
        dx, dw, dbias, dinit = tk.conv_bwd(x, weight, bias, initial_states, ctx.silu, dy)
        return (
            dx.to(x.dtype),
            dw.to(weight.dtype),
            None if bias is None else dbias.to(bias.dtype),
            None if initial_states is None else dinit.to(initial_states.dtype),
            None,
        )


def causal_conv1d_triton(x, weight, bias, initial_states, return_final_states, activation):
    """Same contract as `causal_conv1d_ref`."""
    y = CausalConv1dFn.apply(x, weight, bias, initial_states, activation is not None)
    if not return_final_states:
        return y
    keep, l = weight.shape[1] - 1, x.shape[-1]
    history = x.new_zeros(*x.shape[:2], keep) if initial_states is None else initial_states.to(x.dtype)
    # the last w - 1 inputs of [history, x], without copying all of x
    return y, torch.cat([history[..., min(l, keep) :], x[..., max(0, l - keep) :]], dim=-1)


def causal_conv1d_update_triton(x, conv_state, weight, bias, activation):
    """Same contract as `causal_conv1d_update_ref` (no autograd: a decode step)."""
    y = tk.conv_update(
        x.unsqueeze(-1) if x.dim() == 2 else x, conv_state, weight.contiguous(), bias, activation is not None
    )
    return y.squeeze(-1) if x.dim() == 2 else y
