"""Autograd glue for the Triton SSD scan (imports triton; loaded only when the triton backend runs).

Forward, per chunk c of T steps, with a_i the within-chunk cumulative sum of dt A, X = dt x, S_{-1} = initial:

    states_c = sum_j exp(a_T - a_j) X_j^T B_j                  chunk_state
    prev_c = S_{c-1},  S_c = exp(a_T) S_{c-1} + states_c        state_passing
    y_i = exp(a_i) S_{c-1} C_i + sum_{j <= i} (C_i . B_j) exp(a_i - a_j) X_j      chunk_scan

Backward, with dy and the final state's gradient:

    dprev_c = sum_i exp(a_i) dy_i^T C_i                          chunk_state, reverse
    gS_c = dL/dS_c: gS_{C-1} = dfinal, gS_{c-1} = dprev_c + exp(a_T) gS_c;  dinitial = dL/dS_{-1}
    R_j = exp(a_T - a_j) gS_c B_j + sum_{i >= j} (B_j . C_i) exp(a_i - a_j) dy_i  ->  dx_j = dt_j R_j
    dB_j = exp(a_T - a_j) X_j gS_c + sum_{i >= j} (X_j . dy_i) exp(a_i - a_j) C_i   (summed over a group's heads)
    dC_i = exp(a_i) dy_i S_{c-1} + sum_{j <= i} (dy_i . X_j) exp(a_i - a_j) B_j

The gradient of each step's dt A, d_k = dL/d(dt_k A), sums three kinds of terms, all added (the stable form
mamba_ssm uses; the shorter sum_{i >= k} (dy_i . y_i - X_i . R_i) subtracts nearly equal terms and turns the
~1e-3 error of a GPU's TF32 tl.dot into ~1e-2 in dt_bias and A):

    d_k = sum_{i >= k > j} (dy_i . X_j)(C_i . B_j) exp(a_i - a_j)       inside the chunk (dda_intra)
        + sum_{i >= k} dy_i . exp(a_i) S_{c-1} C_i + exp(a_T) gS_c . S_{c-1}     the state entering it
        + sum_{j < k} X_j . exp(a_T - a_j) gS_c B_j                             the state leaving it
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longseq.kernels._triton import pow2
from longseq.kernels.ssd import triton_kernels as tk
from longseq.kernels.ssd.reference import finish, prepare_dt


def _chunk_cumsum(dtA: torch.Tensor, T: int) -> torch.Tensor:
    """dtA (b, l, h) -> within-chunk cumulative sums (b, h, c, T), padded with zeros (no decay) past l."""
    b, l, h = dtA.shape
    c = -(-l // T)
    padded = F.pad(dtA, (0, 0, 0, c * T - l)).view(b, c, T, h)
    return torch.cumsum(padded, dim=2).permute(0, 3, 1, 2).contiguous()


class SSDScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, initial_states, T: int):
        a_cum = _chunk_cumsum(dt * A, T)
        X = x.float() * dt[..., None]
        states = tk.chunk_state(X, B, a_cum, reverse=False)
        prev, final = tk.state_passing(states, a_cum, initial_states, reverse=False)
        y = tk.chunk_scan(C, B, X, prev, a_cum, reverse=False, transpose_states=True)
        ctx.save_for_backward(x, dt, A, B, C, a_cum, prev)
        ctx.has_init = initial_states is not None
        return y, final

    @staticmethod
    def backward(ctx, dy, dfinal):
        x, dt, A, B, C, a_cum, prev = ctx.saved_tensors
        b, l, h, p = x.shape
        g, n = B.shape[2], B.shape[3]
        T = a_cum.shape[-1]
        dy = dy.float().contiguous()
        X = (x.float() * dt[..., None]).contiguous()
        dprev = tk.chunk_state(dy, C, a_cum, reverse=True)
        gS, dinit = tk.state_passing(dprev, a_cum, dfinal.float().contiguous(), reverse=True)
        R = tk.chunk_scan(B, C, dy, gS, a_cum, reverse=True, transpose_states=True)
        dB = tk.chunk_scan(X, dy, C, gS, a_cum, reverse=True, transpose_states=False)
        dC = tk.chunk_scan(dy, X, B, prev, a_cum, reverse=False, transpose_states=False)
        dx = R * dt[..., None]
        ddt_direct = (R * x.float()).sum(-1)  # (b, l, h)

        c = a_cum.shape[2]

        def by_chunk(v):  # (b, l, h) -> (b, c, T, h), zero past l
            return F.pad(v, (0, 0, 0, c * T - l)).view(b, c, T, h)

        # d_k of the module docstring, every term added: inside the chunk, the state entering it (each step's
        # share, then exp(a_T) gS . S_{c-1} for every step), the state leaving it (the steps before k)
        entering = by_chunk(
            (dy * tk.chunk_scan(C, B, X, prev, a_cum, reverse=False, transpose_states=True, intra=False)).sum(-1)
        )
        leaving = by_chunk(
            (X * tk.chunk_scan(B, C, dy, gS, a_cum, reverse=True, transpose_states=True, intra=False)).sum(-1)
        )
        decay_T = torch.exp(a_cum[..., -1]).transpose(1, 2)  # (b, c, h)
        d_dtA = (
            by_chunk(tk.dda_intra(dy, X, C, B, a_cum))
            + torch.flip(torch.cumsum(torch.flip(entering, [2]), dim=2), [2])
            + (decay_T * (gS * prev).sum((-1, -2)))[:, :, None]
            + torch.cumsum(leaving, dim=2)
            - leaving
        ).reshape(b, c * T, h)[:, :l]
        ddt = ddt_direct + d_dtA * A
        dA = (d_dtA * dt).sum((0, 1))
        return (
            dx.to(x.dtype),
            ddt.to(dt.dtype),
            dA.to(A.dtype),
            dB.view(b, l, g, h // g, n).sum(3).to(B.dtype),
            dC.view(b, l, g, h // g, n).sum(3).to(C.dtype),
            dinit if ctx.has_init else None,
            None,
        )


def ssd_scan_triton(x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, initial_states, return_final_states):
    """Same contract as `ssd_scan_ref`. The chunk length is ``chunk_size`` rounded up to a power of two, at least
    16 (tl.dot's smallest tile); like every chunk length it leaves the function unchanged."""
    dt = prepare_dt(dt, dt_bias, dt_softplus)
    init = None if initial_states is None else initial_states.float().contiguous()
    y, final = SSDScanFn.apply(x, dt, A.float(), B, C, init, pow2(chunk_size, 16))
    out = finish(y, x, D, z).to(x.dtype)
    return (out, final) if return_final_states else out
