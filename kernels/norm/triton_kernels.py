"""Triton kernels of the fused add + RMSNorm / LayerNorm (forward and backward) and their launchers.

One program normalises ROWS rows in turn (a whole row of d features fits one block); the backward accumulates
the weight and bias gradients of its rows in registers and stores one partial sum per program.

Launch settings (sm_90a compile report in benchmarks/RESULTS.md): the warps grow with the block as in
mamba_ssm's layer_norm (BLOCK / 256, 1 to 8), since 4 warps hold a backward row of 4096 in 255 registers and
spill 6.5 KB per thread at 8192; one row per program at decode sizes, so that a few rows spread over the SMs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from longseq.kernels._triton import on_device, pow2


def num_warps(block: int) -> int:
    """Warps for a row block of ``block`` features: one per 256, at least 1, at most 8."""
    return min(max(block // 256, 1), 8)


def rows_per_program(rows: int) -> int:
    """1 below 4096 rows (each row its own program); more above, so that the backward's per-program partial
    sums of dweight (programs x d floats) stay small."""
    return 1 if rows < 4096 else 4 if rows < 16384 else 16


@triton.jit
def _add_norm_fwd_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    b_ptr,
    y_ptr,
    res_out_ptr,
    mean_ptr,
    rstd_ptr,
    rows,
    d,
    eps,
    HAS_RES: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    IS_RMS: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    cols = tl.arange(0, BLOCK)
    cm = cols < d
    w = tl.load(w_ptr + cols, mask=cm, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(b_ptr + cols, mask=cm, other=0.0).to(tl.float32)
    for i in range(0, ROWS):
        row = tl.program_id(0).to(tl.int64) * ROWS + i
        if row < rows:
            off = row * d + cols
            r = tl.load(x_ptr + off, mask=cm, other=0.0).to(tl.float32)
            if HAS_RES:
                r += tl.load(res_ptr + off, mask=cm, other=0.0).to(tl.float32)
            tl.store(res_out_ptr + off, r, mask=cm)
            if IS_RMS:
                xc = r
            else:
                mean = tl.sum(r, axis=0) / d
                tl.store(mean_ptr + row, mean)
                xc = tl.where(cm, r - mean, 0.0)
            rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=0) / d + eps)
            tl.store(rstd_ptr + row, rstd)
            y = xc * rstd * w
            if HAS_BIAS:
                y += bias
            tl.store(y_ptr + off, y, mask=cm)


@triton.jit
def _add_norm_bwd_kernel(
    r_ptr,
    w_ptr,
    mean_ptr,
    rstd_ptr,
    dy_ptr,
    dres_out_ptr,
    dr_ptr,
    dw_ptr,
    db_ptr,
    rows,
    d,
    HAS_DRES: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    IS_RMS: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    cm = cols < d
    w = tl.load(w_ptr + cols, mask=cm, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK], dtype=tl.float32)
    db = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(0, ROWS):
        row = pid * ROWS + i
        if row < rows:
            off = row * d + cols
            r = tl.load(r_ptr + off, mask=cm, other=0.0).to(tl.float32)
            rstd = tl.load(rstd_ptr + row)
            if IS_RMS:
                xhat = r * rstd
            else:
                xhat = tl.where(cm, (r - tl.load(mean_ptr + row)) * rstd, 0.0)
            dy = tl.load(dy_ptr + off, mask=cm, other=0.0).to(tl.float32)
            wdy = w * dy
            dw += dy * xhat
            db += dy
            dx = wdy - xhat * (tl.sum(wdy * xhat, axis=0) / d)
            if not IS_RMS:
                dx -= tl.sum(wdy, axis=0) / d
            dx *= rstd
            if HAS_DRES:
                dx += tl.load(dres_out_ptr + off, mask=cm, other=0.0).to(tl.float32)
            tl.store(dr_ptr + off, dx, mask=cm)
    tl.store(dw_ptr + pid * d + cols, dw, mask=cm)
    if HAS_BIAS:
        tl.store(db_ptr + pid * d + cols, db, mask=cm)


def add_norm_fwd(x, residual, weight, bias, eps, is_rms_norm, res_dtype):
    """x, residual: (rows, d) contiguous. Returns y (x's dtype), r (res_dtype), mean, rstd (rows,) float32."""
    rows, d = x.shape
    y = torch.empty_like(x)
    r = torch.empty(rows, d, device=x.device, dtype=res_dtype)
    mean = torch.empty(rows, device=x.device, dtype=torch.float32)
    rstd = torch.empty(rows, device=x.device, dtype=torch.float32)
    per, block = rows_per_program(rows), pow2(d)
    with on_device(x):
        _add_norm_fwd_kernel[(triton.cdiv(rows, per),)](
            x, residual, weight, bias, y, r, mean, rstd,
            rows, d, eps,
            HAS_RES=residual is not None, HAS_BIAS=bias is not None, IS_RMS=is_rms_norm, ROWS=per, BLOCK=block,
            num_warps=num_warps(block),
        )  # fmt: skip
    return y, r, mean, rstd


def add_norm_bwd(r, weight, bias, mean, rstd, is_rms_norm, dy, dres_out):
    """Returns the gradient of the sum r (rows, d) float32, dweight (d,), dbias (d,) or None."""
    rows, d = r.shape
    per, block = rows_per_program(rows), pow2(d)
    n_prog = triton.cdiv(rows, per)
    dr = torch.empty(rows, d, device=r.device, dtype=torch.float32)
    dw = torch.empty(n_prog, d, device=r.device, dtype=torch.float32)
    db = torch.empty(n_prog, d, device=r.device, dtype=torch.float32) if bias is not None else None
    with on_device(r):
        _add_norm_bwd_kernel[(n_prog,)](
            r, weight, mean, rstd, dy, dres_out, dr, dw, db,
            rows, d,
            HAS_DRES=dres_out is not None, HAS_BIAS=bias is not None, IS_RMS=is_rms_norm, ROWS=per, BLOCK=block,
            num_warps=num_warps(block),
        )  # fmt: skip
    return dr, dw.sum(0), (db.sum(0) if db is not None else None)
