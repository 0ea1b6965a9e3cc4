"""Triton kernels around Hyena's long conv and their launchers: the short conv of the three streams fused with
the input gate (x0 and v * x1 out; its backward writes the gradient before the short conv, which the causal
conv's backward kernel then takes), and the long conv's skip fused with the output gate. The long conv itself
stays an FFT in torch (cuFFT), which beats a direct Triton conv at Hyena's full-length filters."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from longseq.kernels._triton import on_device
from longseq.kernels.causal_conv1d.triton_kernels import BLOCK_D, BLOCK_L, _x_at, grid, row_and_block


@triton.jit
def _conv_stream(
    u_ptr,
    w_ptr,
    bias_ptr,
    bi,
    ch,
    d_mask,
    t,
    l,
    s_ub,
    s_ud,
    s_ul,
    W: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """The short conv (no initial states) of channels ch at positions t, (BLOCK_D, BLOCK_L) float32."""
    acc = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + ch, mask=d_mask, other=0.0).to(tl.float32)[:, None]
    for k in tl.static_range(W):
        wk = tl.load(w_ptr + ch * W + k, mask=d_mask, other=0.0).to(tl.float32)
        acc += wk[:, None] * _x_at(
            u_ptr, u_ptr, bi, ch, d_mask, t - (W - 1) + k, l, s_ub, s_ud, s_ul, 0, 0, 0, W, False
        )
    return acc


@triton.jit
def _pre_kernel(
    u_ptr,
    w_ptr,
    bias_ptr,
    dx0_ptr,
    dvg_ptr,
    x0_ptr,
    vg_ptr,
    dpre_ptr,
    l,
    d,
    n_lblocks,
    s_ub,
    s_ud,
    s_ul,
    W: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    GRAD: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """Forward: x0 and vg = v * x1 (b, d, l). With GRAD: dpre (b, 3d, l) from dx0 and dvg."""
    bi, pid_l = row_and_block(n_lblocks)
    dd = (tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    t = pid_l * BLOCK_L + tl.arange(0, BLOCK_L).to(tl.int64)
    d_mask = dd < d
    m = d_mask[:, None] & (t < l)[None, :]
    x1 = _conv_stream(u_ptr, w_ptr, bias_ptr, bi, dd + d, d_mask, t, l, s_ub, s_ud, s_ul, W, HAS_BIAS, BLOCK_D, BLOCK_L)
    v = _conv_stream(
        u_ptr, w_ptr, bias_ptr, bi, dd + 2 * d, d_mask, t, l, s_ub, s_ud, s_ul, W, HAS_BIAS, BLOCK_D, BLOCK_L
    )
    off = (bi * d + dd[:, None]) * l + t[None, :]  # (b, d, l) contiguous
    if GRAD:
        dvg = tl.load(dvg_ptr + off, mask=m, other=0.0).to(tl.float32)
        # (b, 3d, l) contiguous; the stream's channel is computed in int64 (d * l alone can pass 2^31)
        x0_pre = ((bi * 3 + 0) * d + dd[:, None]) * l + t[None, :]
        x1_pre = ((bi * 3 + 1) * d + dd[:, None]) * l + t[None, :]
        v_pre = ((bi * 3 + 2) * d + dd[:, None]) * l + t[None, :]
        tl.store(dpre_ptr + x0_pre, tl.load(dx0_ptr + off, mask=m, other=0.0).to(tl.float32), mask=m)
        tl.store(dpre_ptr + x1_pre, dvg * v, mask=m)
        tl.store(dpre_ptr + v_pre, dvg * x1, mask=m)
    else:
        x0 = _conv_stream(u_ptr, w_ptr, bias_ptr, bi, dd, d_mask, t, l, s_ub, s_ud, s_ul, W, HAS_BIAS, BLOCK_D, BLOCK_L)
        tl.store(x0_ptr + off, x0, mask=m)
        tl.store(vg_ptr + off, v * x1, mask=m)


@triton.jit
def _post_kernel(
    y_ptr,
    vg_ptr,
    x0_ptr,
    D_ptr,
    dout_ptr,
    out_ptr,
    dy_ptr,
    dx0_ptr,
    dD_ptr,
    l,
    d,
    n_lblocks,
    s_yb,
    s_yd,
    s_yl,
    GRAD: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """Forward: out = (y + D vg) x0. With GRAD: dy = dout x0 (also vg's skip gradient / D), dx0, partial dD."""
    bi, pid_l = row_and_block(n_lblocks)
    dd = (tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    t = pid_l * BLOCK_L + tl.arange(0, BLOCK_L).to(tl.int64)
    d_mask = dd < d
    m = d_mask[:, None] & (t < l)[None, :]
    off = (bi * d + dd[:, None]) * l + t[None, :]
    y = tl.load(y_ptr + bi * s_yb + dd[:, None] * s_yd + t[None, :] * s_yl, mask=m, other=0.0).to(tl.float32)
    vg = tl.load(vg_ptr + off, mask=m, other=0.0).to(tl.float32)
    x0 = tl.load(x0_ptr + off, mask=m, other=0.0).to(tl.float32)
    Dv = tl.load(D_ptr + dd, mask=d_mask, other=0.0).to(tl.float32)
    pre = y + Dv[:, None] * vg
    if GRAD:
        dout = tl.load(dout_ptr + off, mask=m, other=0.0).to(tl.float32)
        dy = dout * x0
        tl.store(dy_ptr + off, dy, mask=m)
        tl.store(dx0_ptr + off, dout * pre, mask=m)
        tl.store(dD_ptr + (bi * n_lblocks + pid_l) * d + dd, tl.sum(dy * vg, axis=1), mask=d_mask)
    else:
        tl.store(out_ptr + off, pre * x0, mask=m)


def pre_fwd(u, weight, bias):
    """u (b, 3d, l) any strides; weight (3d, w) contiguous. Returns x0, vg (b, d, l) in u's dtype."""
    b, d3, l = u.shape
    d = d3 // 3
    x0 = torch.empty(b, d, l, device=u.device, dtype=u.dtype)
    vg = torch.empty_like(x0)
    with on_device(u):
        _pre_kernel[grid(b, d, l)](
            u, weight, bias, None, None, x0, vg, None,
            l, d, triton.cdiv(l, BLOCK_L), *u.stride(),
            W=weight.shape[1], HAS_BIAS=bias is not None, GRAD=False, BLOCK_D=BLOCK_D, BLOCK_L=BLOCK_L,
        )  # fmt: skip
    return x0, vg


def pre_grad(u, weight, bias, dx0, dvg):
    """The gradient before the short conv, (b, 3d, l) float32, from those of x0 and vg (contiguous)."""
    b, d3, l = u.shape
    dpre = torch.empty(b, d3, l, device=u.device, dtype=torch.float32)
    with on_device(u):
        _pre_kernel[grid(b, d3 // 3, l)](
            u, weight, bias, dx0, dvg, None, None, dpre,
            l, d3 // 3, triton.cdiv(l, BLOCK_L), *u.stride(),
            W=weight.shape[1], HAS_BIAS=bias is not None, GRAD=True, BLOCK_D=BLOCK_D, BLOCK_L=BLOCK_L,
        )  # fmt: skip
    return dpre


def post_fwd(y, vg, x0, D):
    """y (b, d, l) any strides; vg, x0 contiguous. Returns (y + D vg) x0 in vg's dtype."""
    b, d, l = vg.shape
    out = torch.empty_like(vg)
    with on_device(vg):
        _post_kernel[grid(b, d, l)](
            y, vg, x0, D, None, out, None, None, None,
            l, d, triton.cdiv(l, BLOCK_L), *y.stride(),
            GRAD=False, BLOCK_D=BLOCK_D, BLOCK_L=BLOCK_L,
        )  # fmt: skip
    return out


def post_bwd(y, vg, x0, D, dout):
    """Returns dy = dout x0, dx0 (b, d, l) and dD (d,), float32."""
    b, d, l = vg.shape
    n_lblocks = triton.cdiv(l, BLOCK_L)
    f32 = {"device": vg.device, "dtype": torch.float32}
    dy, dx0 = torch.empty(b, d, l, **f32), torch.empty(b, d, l, **f32)
    dD = torch.empty(b, n_lblocks, d, **f32)
    with on_device(vg):
        _post_kernel[grid(b, d, l)](
            y, vg, x0, D, dout, None, dy, dx0, dD,
            l, d, n_lblocks, *y.stride(),
            GRAD=True, BLOCK_D=BLOCK_D, BLOCK_L=BLOCK_L,
        )  # fmt: skip
    return dy, dx0, dD.sum((0, 1))
