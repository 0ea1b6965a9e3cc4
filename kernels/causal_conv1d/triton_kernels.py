"""Triton kernels of the short causal depthwise conv (forward, backward, decode update) and their launchers.

One program covers (BLOCK_D channels, BLOCK_L positions) of one batch row and sums the W taps directly; inputs
before position 0 come from the initial states. The backward first turns dy into the gradient before the
activation (the forward kernel recomputing its pre-activation), then a second kernel gathers dx (and the
initial states' gradient) and per-program partial sums of dweight. All offsets are 64-bit. The grid is
(b * position blocks, channel blocks): the long axis goes in grid x, which allows 2^31 - 1 programs, where grid
y and z stop at 65535 (l = 4.2M at BLOCK_L = 64).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from longseq.kernels._triton import on_device, pow2, sigmoid, strides

BLOCK_D, BLOCK_L = 16, 64


def grid(b: int, d: int, l: int) -> tuple[int, int]:
    """The launch grid of the (b, d, l) kernels: (b * cdiv(l, BLOCK_L), cdiv(d, BLOCK_D)); see `row_and_block`."""
    return (b * triton.cdiv(l, BLOCK_L), triton.cdiv(d, BLOCK_D))


@triton.jit
def row_and_block(n_lblocks):
    """This program's batch row and block of positions (int64), from grid x = b * n_lblocks."""
    pid = tl.program_id(0).to(tl.int64)
    return pid // n_lblocks, pid % n_lblocks


@triton.jit
def _x_at(
    x_ptr, init_ptr, bi, dd, d_mask, pos, l, s_xb, s_xd, s_xl, s_ib, s_id, s_il, W: tl.constexpr, HAS_INIT: tl.constexpr
):
    """x at positions pos (int64, may be negative: the initial states, or zero without them), (BLOCK_D, len(pos))."""
    inside = d_mask[:, None] & (pos[None, :] >= 0) & (pos[None, :] < l)
    v = tl.load(x_ptr + bi * s_xb + dd[:, None] * s_xd + pos[None, :] * s_xl, mask=inside, other=0.0).to(tl.float32)
    if HAS_INIT:
        before = d_mask[:, None] & (pos[None, :] < 0) & (pos[None, :] >= 1 - W)
        v += tl.load(
            init_ptr + bi * s_ib + dd[:, None] * s_id + (pos[None, :] + W - 1) * s_il, mask=before, other=0.0
        ).to(tl.float32)
    return v


@triton.jit
def _conv_fwd_kernel(
    x_ptr,
    w_ptr,
    bias_ptr,
    init_ptr,
    dy_ptr,
    out_ptr,
    l,
    d,
    n_lblocks,
    s_xb,
    s_xd,
    s_xl,
    s_ib,
    s_id,
    s_il,
    s_gb,
    s_gd,
    s_gl,
    s_ob,
    s_od,
    s_ol,
    W: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_INIT: tl.constexpr,
    SILU: tl.constexpr,
    GRAD: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """out = act(conv(x)); with GRAD, out = dy * act'(conv(x)) (the gradient before the activation)."""
    bi, pid_l = row_and_block(n_lblocks)
    dd = (tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    t = pid_l * BLOCK_L + tl.arange(0, BLOCK_L).to(tl.int64)
    d_mask = dd < d
    m = d_mask[:, None] & (t < l)[None, :]
    acc = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + dd, mask=d_mask, other=0.0).to(tl.float32)[:, None]
    for k in tl.static_range(W):
        wk = tl.load(w_ptr + dd * W + k, mask=d_mask, other=0.0).to(tl.float32)
        acc += wk[:, None] * _x_at(
            x_ptr, init_ptr, bi, dd, d_mask, t - (W - 1) + k, l, s_xb, s_xd, s_xl, s_ib, s_id, s_il, W, HAS_INIT
        )
    if GRAD:
        out = tl.load(dy_ptr + bi * s_gb + dd[:, None] * s_gd + t[None, :] * s_gl, mask=m, other=0.0).to(tl.float32)
        if SILU:
            s = sigmoid(acc)
            out *= s * (1.0 + acc * (1.0 - s))
    else:
        out = acc
        if SILU:
            out = acc * sigmoid(acc)
    tl.store(out_ptr + bi * s_ob + dd[:, None] * s_od + t[None, :] * s_ol, out, mask=m)


@triton.jit
def _conv_bwd_kernel(
    x_ptr,
    w_ptr,
    init_ptr,
    dpre_ptr,
    dx_ptr,
    dinit_ptr,
    dw_ptr,
    l,
    d,
    n_lblocks,
    s_xb,
    s_xd,
    s_xl,
    s_ib,
    s_id,
    s_il,
    W: tl.constexpr,
    HAS_INIT: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """dx[t] = sum_k w[k] dpre[t + W - 1 - k]; dweight partial sums per (batch row, block of positions)."""
    bi, pid_l = row_and_block(n_lblocks)
    dd = (tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    t = pid_l * BLOCK_L + tl.arange(0, BLOCK_L).to(tl.int64)
    d_mask = dd < d
    m = d_mask[:, None] & (t < l)[None, :]
    row = (bi * d + dd[:, None]) * l  # dpre and dx are (b, d, l) contiguous
    dpre = tl.load(dpre_ptr + row + t[None, :], mask=m, other=0.0)
    dx = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
    for k in tl.static_range(W):
        wk = tl.load(w_ptr + dd * W + k, mask=d_mask, other=0.0).to(tl.float32)
        src = t + (W - 1 - k)
        dx += wk[:, None] * tl.load(dpre_ptr + row + src[None, :], mask=d_mask[:, None] & (src < l)[None, :], other=0.0)
        xk = _x_at(x_ptr, init_ptr, bi, dd, d_mask, t - (W - 1) + k, l, s_xb, s_xd, s_xl, s_ib, s_id, s_il, W, HAS_INIT)
        dwk = tl.sum(dpre * xk, axis=1)
        tl.store(dw_ptr + ((bi * n_lblocks + pid_l) * d + dd) * W + k, dwk, mask=d_mask)
    tl.store(dx_ptr + row + t[None, :], dx, mask=m)
    if HAS_INIT:  # noqa: SIM102 (a constexpr test must stay apart from the runtime one)
        if pid_l == 0:
            # the W - 1 positions before the sequence: dinit[j] = sum_k w[k] dpre[j - k], j = 0 .. W - 2
            j = tl.arange(0, BLOCK_W).to(tl.int64)
            acc = tl.zeros([BLOCK_D, BLOCK_W], dtype=tl.float32)
            for k in tl.static_range(W):
                wk = tl.load(w_ptr + dd * W + k, mask=d_mask, other=0.0).to(tl.float32)
                # a new name: a variable live before a runtime `if` must keep its shape inside it (GPU compile)
                src_j = j - k
                ok = d_mask[:, None] & (src_j >= 0)[None, :] & (src_j < l)[None, :]
                acc += wk[:, None] * tl.load(dpre_ptr + row + src_j[None, :], mask=ok, other=0.0)
            tl.store(
                dinit_ptr + (bi * d + dd[:, None]) * (W - 1) + j[None, :],
                acc,
                mask=d_mask[:, None] & (j < W - 1)[None, :],
            )


def conv_fwd(x, weight, bias, initial_states, silu):
    """x (b, d, l) any strides; weight (d, w) contiguous; bias (d,); initial_states (b, d, w - 1). y like x."""
    b, d, l = x.shape
    y = torch.empty(b, d, l, device=x.device, dtype=x.dtype)
    _launch_fwd(x, weight, bias, initial_states, None, y, silu)
    return y


def conv_bwd(x, weight, bias, initial_states, silu, dy):
    """Returns dx (b, d, l), dweight (d, w), dbias (d,) or None, dinit (b, d, w - 1) or None; all float32."""
    b, d, l = x.shape
    f32 = {"device": x.device, "dtype": torch.float32}
    dpre = torch.empty(b, d, l, **f32)
    _launch_fwd(x, weight, bias, initial_states, dy, dpre, silu)
    dx, dw, dinit = conv_bwd_from_dpre(x, weight, initial_states, dpre)
    return dx, dw, (dpre.sum((0, 2)) if bias is not None else None), dinit


def conv_bwd_from_dpre(x, weight, initial_states, dpre):
    """dx (b, d, l), dweight (d, w), dinit (b, d, w - 1) or None (float32) from the gradient before the
    activation, dpre (b, d, l) float32 contiguous."""
    b, d, l = x.shape
    w = weight.shape[1]
    f32 = {"device": x.device, "dtype": torch.float32}
    n_lblocks = triton.cdiv(l, BLOCK_L)
    dx = torch.empty(b, d, l, **f32)
    dw = torch.empty(b, n_lblocks, d, w, **f32)
    dinit = torch.empty(b, d, w - 1, **f32) if initial_states is not None else None
    with on_device(x):
        _conv_bwd_kernel[grid(b, d, l)](
            x, weight, initial_states, dpre, dx, dinit, dw,
            l, d, n_lblocks, *x.stride(), *strides(initial_states, 3),
            W=w, HAS_INIT=initial_states is not None, BLOCK_D=BLOCK_D, BLOCK_L=BLOCK_L, BLOCK_W=pow2(w - 1),
        )  # fmt: skip
    return dx, dw.sum((0, 1)), dinit


def _launch_fwd(x, weight, bias, initial_states, dy, out, silu):
    b, d, l = x.shape
    with on_device(x):
        _conv_fwd_kernel[grid(b, d, l)](
            x, weight, bias, initial_states, dy, out,
            l, d, triton.cdiv(l, BLOCK_L), *x.stride(), *strides(initial_states, 3), *strides(dy, 3), *out.stride(),
            W=weight.shape[1], HAS_BIAS=bias is not None, HAS_INIT=initial_states is not None, SILU=silu,
            GRAD=dy is not None, BLOCK_D=BLOCK_D, BLOCK_L=BLOCK_L,
        )  # fmt: skip


@triton.jit
def _conv_update_kernel(
    x_ptr,
    state_ptr,
    w_ptr,
    bias_ptr,
    y_ptr,
    d,
    s,
    k_state,
    s_xb,
    s_xd,
    s_xl,
    s_sb,
    s_sd,
    s_sl,
    s_yb,
    s_yd,
    s_yl,
    W: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """y_j for the s new inputs, then the state shifted by s with the inputs appended (in place)."""
    bi = tl.program_id(0).to(tl.int64)
    dd = (tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    d_mask = dd < d
    x_row = x_ptr + bi * s_xb + dd * s_xd
    state_row = state_ptr + bi * s_sb + dd * s_sd
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + dd, mask=d_mask, other=0.0).to(tl.float32)
    for j in range(0, s):
        acc = bias
        for k in tl.static_range(W):
            i = j - (W - 1) + k  # index into x; negative indexes the state from its end
            v = tl.load(x_row + i * s_xl, mask=d_mask & (i >= 0), other=0.0).to(tl.float32)
            v += tl.load(state_row + (k_state + i) * s_sl, mask=d_mask & (i < 0), other=0.0).to(tl.float32)
            acc += tl.load(w_ptr + dd * W + k, mask=d_mask, other=0.0).to(tl.float32) * v
        if SILU:
            acc = acc * sigmoid(acc)
        tl.store(y_ptr + bi * s_yb + dd * s_yd + j * s_yl, acc, mask=d_mask)
    q = tl.arange(0, BLOCK_K).to(tl.int64)
    src = q + s
    m = d_mask[:, None] & (q < k_state)[None, :]
    new = tl.load(state_row[:, None] + src[None, :] * s_sl, mask=m & (src < k_state)[None, :], other=0.0)
    new += tl.load(x_row[:, None] + (src - k_state)[None, :] * s_xl, mask=m & (src >= k_state)[None, :], other=0.0).to(
        new.dtype
    )
    tl.debug_barrier()  # every read of the old state happens before any write
    tl.store(state_row[:, None] + q[None, :] * s_sl, new, mask=m)


def conv_update(x, conv_state, weight, bias, silu):
    """x (b, d, s); conv_state (b, d, k >= w - 1) updated in place; returns y (b, d, s) in x's dtype."""
    b, d, s = x.shape
    y = torch.empty_like(x)
    block_d = 64
    with on_device(x):
        _conv_update_kernel[(b, triton.cdiv(d, block_d))](
            x, conv_state, weight, bias, y,
            d, s, conv_state.shape[-1], *x.stride(), *conv_state.stride(), *y.stride(),
            W=weight.shape[1], HAS_BIAS=bias is not None, SILU=silu, BLOCK_D=block_d, BLOCK_K=pow2(conv_state.shape[-1]),
        )  # fmt: skip
    return y
