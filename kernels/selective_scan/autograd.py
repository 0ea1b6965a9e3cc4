"""Autograd glue for the Triton selective scan (imports triton; loaded only when the triton backend runs)."""

from __future__ import annotations

import torch

from longseq.kernels.selective_scan import triton_kernels as tk


def _contiguous_or_none(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.contiguous()


class SelectiveScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state):
        grouped = B.dim() == 4
        B4, C4 = (B, C) if grouped else (B.unsqueeze(1), C.unsqueeze(1))
        A, D, delta_bias = A.contiguous(), _contiguous_or_none(D), _contiguous_or_none(delta_bias)
        h0 = _contiguous_or_none(initial_state)
        out, last, states = tk.scan_fwd(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, h0)
        ctx.save_for_backward(u, delta, A, B4, C4, D, z, delta_bias, states)
        ctx.delta_softplus, ctx.grouped = delta_softplus, grouped
        ctx.dtypes = (A.dtype, B.dtype, C.dtype, None if D is None else D.dtype)
        ctx.has_h0 = initial_state is not None
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B4, C4, D, z, delta_bias, states = ctx.saved_tensors
        dlast = torch.zeros_like(states[:, 0]) if dlast is None else dlast.float().contiguous()
        du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0 = tk.scan_bwd(
            u, delta, A, B4, C4, D, z, delta_bias, ctx.delta_softplus, states, dout, dlast
        )
        A_dtype, B_dtype, C_dtype, D_dtype = ctx.dtypes
        if not ctx.grouped:
            dB, dC = dB.squeeze(1), dC.squeeze(1)
        return (
            du.to(u.dtype),
            ddelta.to(delta.dtype),
            dA.to(A_dtype),
            dB.to(B_dtype),
            dC.to(C_dtype),
            None if dD is None else dD.to(D_dtype),
            None if dz is None else dz.to(z.dtype),
            None if ddelta_bias is None else ddelta_bias.to(delta_bias.dtype),
            None,
            dh0 if ctx.has_h0 else None,
        )


def selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state):
    """Same contract as `selective_scan_ref`."""
    out, last = SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    return (out, last) if return_last_state else out


def selective_state_update_triton(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus):
    """Same contract as `selective_state_update_ref` (no autograd: a decode step)."""
    if B.dim() == 2:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    # A keeps its strides (Mamba-2's is an expanded view, not copied every step); D and dt_bias are indexed by channel
    return tk.state_update(state, x, dt, A, B, C, _contiguous_or_none(D), z, _contiguous_or_none(dt_bias), dt_softplus)
