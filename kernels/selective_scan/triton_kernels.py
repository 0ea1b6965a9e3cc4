"""Triton kernels of the selective scan and its decode step, with their launchers (no autograd, no validation).

Scan layout: one program per (batch, group, block of BLOCK_D channels) walks the sequence in tiles of
BLOCK_L steps. A tile holds (BLOCK_D, n, BLOCK_L) decays and inputs and runs the recurrence as an associative
scan along time; the state crossing tile boundaries is carried in registers. The forward stores the state
entering every tile, so the backward recomputes one tile at a time (memory l / BLOCK_L states) and runs the
adjoint recurrence as a reverse associative scan. dB and dC sum over channels, so programs add their partial
sums with atomics (as upstream's CUDA kernel does). All offsets are 64-bit.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from longseq.kernels._triton import (
    autotune_configs,
    keep_configs,
    on_device,
    pow2,
    sigmoid,
    size_class,
    softplus,
    strides,
)

# Steps per tile, and so between the states the forward keeps for the backward.
BLOCK_L = 32


@triton.jit
def _linear_combine(a1, b1, a2, b2):
    """Compose h -> a1 h + b1 then h -> a2 h + b2."""
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _delta_tile(delta_ptr, bias, off, mask, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Load a (BLOCK_D, BLOCK_L) tile of delta with bias and softplus applied; zero outside the sequence."""
    raw = tl.load(delta_ptr + off, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw += bias[:, None]
    dl = raw
    if SOFTPLUS:
        dl = softplus(raw)
    return tl.where(mask, dl, 0.0), raw


def _per_thread(config, kwargs) -> int:
    """Elements of a (BLOCK_D, BLOCK_N, BLOCK_L) tile per thread: what decides the registers of the scans."""
    return config.kwargs["BLOCK_D"] * kwargs["BLOCK_N"] * kwargs["BLOCK_L"] // (32 * config.num_warps)


# Configs that do not spill on sm_90a (compile report in benchmarks/RESULTS.md). Forward: up to 32 tile
# elements per thread (at 64, n = 64 with float32 inputs spilled 48-192 B). Backward (twice the live tiles):
# 4 to 16 (with 2, BLOCK_D = 1 at n = 16 spilled 8 B); its (4, 8 warps) spilled 16 B without the optional
# inputs and is left out. BLOCK_D = 1 or 2 serve n >= 64.
FWD_CONFIGS = (
    triton.Config({"BLOCK_D": 4}, num_warps=4),
    triton.Config({"BLOCK_D": 8}, num_warps=4),
    triton.Config({"BLOCK_D": 8}, num_warps=8),
    triton.Config({"BLOCK_D": 16}, num_warps=8),
    triton.Config({"BLOCK_D": 2}, num_warps=4),
)
BWD_CONFIGS = (
    triton.Config({"BLOCK_D": 4}, num_warps=4),
    triton.Config({"BLOCK_D": 8}, num_warps=8),
    triton.Config({"BLOCK_D": 2}, num_warps=8),
    triton.Config({"BLOCK_D": 1}, num_warps=8),
)


@triton.autotune(
    configs=autotune_configs(*FWD_CONFIGS),
    key=["dg", "n", "HAS_Z", "b_class", "l_class"],
    prune_configs_by=keep_configs(lambda config, kwargs: _per_thread(config, kwargs) <= 32),
)
@triton.jit(do_not_specialize=["b_class", "l_class"])
def _scan_fwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    h0_ptr,
    out_ptr,
    last_ptr,
    states_ptr,
    l,
    g,
    dg,
    n,
    n_tiles,
    b_class,  # size_class(b * g) and size_class(l): autotune keys only, unused by the kernel
    l_class,
    s_ub,
    s_ud,
    s_ul,
    s_db,
    s_dd,
    s_dl,
    s_zb,
    s_zd,
    s_zl,
    s_ob,
    s_od,
    s_ol,
    s_Bb,
    s_Bg,
    s_Bn,
    s_Bl,
    s_Cb,
    s_Cg,
    s_Cn,
    s_Cl,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    bi, gi = pid // g, pid % g
    local = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = local < dg
    dd = gi * dg + local.to(tl.int64)  # channel index
    d_all = g * dg
    nn = tl.arange(0, BLOCK_N).to(tl.int64)
    n_mask = nn < n
    dn_mask = d_mask[:, None] & n_mask[None, :]
    tt = tl.arange(0, BLOCK_L)
    state_off = (bi * d_all + dd[:, None]) * n + nn[None, :]  # (b, d, n) contiguous

    A = tl.load(A_ptr + dd[:, None] * n + nn[None, :], mask=dn_mask, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + dd, mask=d_mask, other=0.0).to(tl.float32)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + dd, mask=d_mask, other=0.0).to(tl.float32)
    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    if HAS_H0:
        h = tl.load(h0_ptr + state_off, mask=dn_mask, other=0.0).to(tl.float32)

    for c in range(0, n_tiles):
        t = (c * BLOCK_L + tt).to(tl.int64)
        t_mask = t < l
        m2 = d_mask[:, None] & t_mask[None, :]
        tl.store(states_ptr + ((bi * n_tiles + c) * d_all + dd[:, None]) * n + nn[None, :], h, mask=dn_mask)
        u = tl.load(u_ptr + bi * s_ub + dd[:, None] * s_ud + t[None, :] * s_ul, mask=m2, other=0.0).to(tl.float32)
        dl, _ = _delta_tile(delta_ptr, bias, bi * s_db + dd[:, None] * s_dd + t[None, :] * s_dl, m2, HAS_BIAS, SOFTPLUS)
        nt_mask = n_mask[:, None] & t_mask[None, :]
        Bt = tl.load(
            B_ptr + bi * s_Bb + gi * s_Bg + nn[:, None] * s_Bn + t[None, :] * s_Bl, mask=nt_mask, other=0.0
        ).to(tl.float32)
        Ct = tl.load(
            C_ptr + bi * s_Cb + gi * s_Cg + nn[:, None] * s_Cn + t[None, :] * s_Cl, mask=nt_mask, other=0.0
        ).to(tl.float32)
        dA = tl.exp(dl[:, None, :] * A[:, :, None])  # (BLOCK_D, BLOCK_N, BLOCK_L)
        dBu = (dl * u)[:, None, :] * Bt[None, :, :]
        decay, hs = tl.associative_scan((dA, dBu), axis=2, combine_fn=_linear_combine)
        hs += decay * h[:, :, None]
        y = tl.sum(hs * Ct[None, :, :], axis=1)
        # past the end dA = 1 and dBu = 0, so the tile's last column is the state after the last real step
        h = tl.sum(tl.where(tt[None, None, :] == BLOCK_L - 1, hs, 0.0), axis=2)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            zt = tl.load(z_ptr + bi * s_zb + dd[:, None] * s_zd + t[None, :] * s_zl, mask=m2, other=0.0).to(tl.float32)
            y *= zt * sigmoid(zt)
        tl.store(out_ptr + bi * s_ob + dd[:, None] * s_od + t[None, :] * s_ol, y, mask=m2)
    tl.store(last_ptr + state_off, h, mask=dn_mask)


@triton.autotune(
    configs=autotune_configs(*BWD_CONFIGS),
    key=["dg", "n", "HAS_Z", "b_class", "l_class"],
    prune_configs_by=keep_configs(lambda config, kwargs: 4 <= _per_thread(config, kwargs) <= 16),
    reset_to_zero=["dB_ptr", "dC_ptr"],
)
@triton.jit(do_not_specialize=["b_class", "l_class"])
def _scan_bwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    states_ptr,
    dout_ptr,
    dlast_ptr,
    du_ptr,
    ddelta_ptr,
    dA_ptr,
    dB_ptr,
    dC_ptr,
    dD_ptr,
    dz_ptr,
    dh0_ptr,
    l,
    g,
    dg,
    n,
    n_tiles,
    b_class,  # size_class(b * g) and size_class(l): autotune keys only, unused by the kernel
    l_class,
    s_ub,
    s_ud,
    s_ul,
    s_db,
    s_dd,
    s_dl,
    s_zb,
    s_zd,
    s_zl,
    s_gb,
    s_gd,
    s_gl,
    s_Bb,
    s_Bg,
    s_Bn,
    s_Bl,
    s_Cb,
    s_Cg,
    s_Cn,
    s_Cl,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    bi, gi = pid // g, pid % g
    local = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = local < dg
    dd = gi * dg + local.to(tl.int64)
    d_all = g * dg
    nn = tl.arange(0, BLOCK_N).to(tl.int64)
    n_mask = nn < n
    dn_mask = d_mask[:, None] & n_mask[None, :]
    tt = tl.arange(0, BLOCK_L)
    state_off = (bi * d_all + dd[:, None]) * n + nn[None, :]

    A = tl.load(A_ptr + dd[:, None] * n + nn[None, :], mask=dn_mask, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + dd, mask=d_mask, other=0.0).to(tl.float32)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + dd, mask=d_mask, other=0.0).to(tl.float32)
    # gradient reaching the state at the end of the tile from everything after it
    carry = tl.load(dlast_ptr + state_off, mask=dn_mask, other=0.0).to(tl.float32)
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)

    for i in range(0, n_tiles):
        c = n_tiles - 1 - i
        t = (c * BLOCK_L + tt).to(tl.int64)
        t_mask = t < l
        m2 = d_mask[:, None] & t_mask[None, :]
        nt_mask = n_mask[:, None] & t_mask[None, :]
        u_off = bi * s_ub + dd[:, None] * s_ud + t[None, :] * s_ul
        d_off = bi * s_db + dd[:, None] * s_dd + t[None, :] * s_dl
        z_off = bi * s_zb + dd[:, None] * s_zd + t[None, :] * s_zl
        u = tl.load(u_ptr + u_off, mask=m2, other=0.0).to(tl.float32)
        dl, raw = _delta_tile(delta_ptr, bias, d_off, m2, HAS_BIAS, SOFTPLUS)
        next_mask = d_mask[:, None] & (t[None, :] + 1 < l)
        dl_next, _ = _delta_tile(delta_ptr, bias, d_off + s_dl, next_mask, HAS_BIAS, SOFTPLUS)
        Bt = tl.load(
            B_ptr + bi * s_Bb + gi * s_Bg + nn[:, None] * s_Bn + t[None, :] * s_Bl, mask=nt_mask, other=0.0
        ).to(tl.float32)
        Ct = tl.load(
            C_ptr + bi * s_Cb + gi * s_Cg + nn[:, None] * s_Cn + t[None, :] * s_Cl, mask=nt_mask, other=0.0
        ).to(tl.float32)

        # recompute the tile's states from the one saved at its start
        h_in = tl.load(
            states_ptr + ((bi * n_tiles + c) * d_all + dd[:, None]) * n + nn[None, :], mask=dn_mask, other=0.0
        )
        dA = tl.exp(dl[:, None, :] * A[:, :, None])
        dBu = (dl * u)[:, None, :] * Bt[None, :, :]
        decay, hs = tl.associative_scan((dA, dBu), axis=2, combine_fn=_linear_combine)
        hs += decay * h_in[:, :, None]

        # through the gate: out = (y + D u) * silu(z)
        dout = tl.load(dout_ptr + bi * s_gb + dd[:, None] * s_gd + t[None, :] * s_gl, mask=m2, other=0.0).to(tl.float32)
        dy = dout
        if HAS_Z:
            zt = tl.load(z_ptr + z_off, mask=m2, other=0.0).to(tl.float32)
            sz = sigmoid(zt)
            y = tl.sum(hs * Ct[None, :, :], axis=1)
            if HAS_D:
                y += Dv[:, None] * u
            dz_off = (bi * d_all + dd[:, None]) * l + t[None, :]
            tl.store(dz_ptr + dz_off, dout * y * sz * (1.0 + zt * (1.0 - sz)), mask=m2)
            dy = dout * zt * sz
        du = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
        if HAS_D:
            dD_acc += tl.sum(dy * u, axis=1)
            du = dy * Dv[:, None]

        # adjoint: G_t = C_t dy_t + dA_{t+1} G_{t+1}; the tile's last step takes the carry instead
        a_rev = tl.where(tt[None, None, :] == BLOCK_L - 1, 1.0, tl.exp(dl_next[:, None, :] * A[:, :, None]))
        decay_rev, G = tl.associative_scan(
            (a_rev, Ct[None, :, :] * dy[:, None, :]), axis=2, combine_fn=_linear_combine, reverse=True
        )
        G += decay_rev * carry[:, :, None]
        carry = tl.sum(tl.where(tt[None, None, :] == 0, dA * G, 0.0), axis=2)

        # dL/d(delta_t A) = G_t dA_t h_{t-1} = G_t (h_t - dBu_t)
        M = G * (hs - dBu)
        dA_acc += tl.sum(M * dl[:, None, :], axis=2)
        GB = tl.sum(G * Bt[None, :, :], axis=1)
        du += dl * GB
        ddl = tl.sum(M * A[:, :, None], axis=1) + u * GB
        if SOFTPLUS:
            ddl *= sigmoid(raw)
        g_off = (bi * d_all + dd[:, None]) * l + t[None, :]  # the gradients are (b, d, l) contiguous
        tl.store(du_ptr + g_off, du, mask=m2)
        tl.store(ddelta_ptr + g_off, ddl, mask=m2)
        dB_off = ((bi * g + gi) * n + nn[:, None]) * l + t[None, :]
        # pure accumulation, read by a later launch: no ordering needed (relaxed, not the default acq_rel)
        tl.atomic_add(dB_ptr + dB_off, tl.sum(G * (dl * u)[:, None, :], axis=0), mask=nt_mask, sem="relaxed")
        tl.atomic_add(dC_ptr + dB_off, tl.sum(hs * dy[:, None, :], axis=0), mask=nt_mask, sem="relaxed")

    tl.store(dh0_ptr + state_off, carry, mask=dn_mask)
    tl.store(dA_ptr + state_off, dA_acc, mask=dn_mask)
    if HAS_D:
        tl.store(dD_ptr + bi * d_all + dd, dD_acc, mask=d_mask)


def scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, h0):
    """u, delta, z (b, d, l) any strides; A (d, n) contiguous; B, C (b, g, n, l); D, delta_bias (d,); h0 (b, d, n)
    contiguous or None. Returns out (b, d, l) in u's dtype, last (b, d, n) and the tile states (b, tiles, d, n),
    both float32."""
    b, d, l = u.shape
    g, n = B.shape[1], B.shape[2]
    n_tiles = triton.cdiv(l, BLOCK_L)
    out = torch.empty(b, d, l, device=u.device, dtype=u.dtype)
    last = torch.empty(b, d, n, device=u.device, dtype=torch.float32)
    states = torch.empty(b, n_tiles, d, n, device=u.device, dtype=torch.float32)
    grid = lambda meta: (b * g, triton.cdiv(d // g, meta["BLOCK_D"]))  # noqa: E731
    with on_device(u):
        _scan_fwd_kernel[grid](
            u, delta, A, B, C, D, z, delta_bias, h0, out, last, states,
            l, g, d // g, n, n_tiles, size_class(b * g), size_class(l),
            *u.stride(), *delta.stride(), *strides(z, 3), *out.stride(), *B.stride(), *C.stride(),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
            HAS_H0=h0 is not None, BLOCK_N=pow2(n), BLOCK_L=BLOCK_L,
        )  # fmt: skip
    return out, last, states


def scan_bwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, states, dout, dlast):
    """Gradients of `scan_fwd` given dout (b, d, l) and dlast (b, d, n) contiguous float32.

    Returns du, ddelta (the gradient of the raw delta) as (b, d, l) float32; dA (d, n); dB, dC (b, g, n, l);
    dD (d,) or None; dz (b, d, l) or None; ddelta_bias (d,) or None; dh0 (b, d, n); all float32.
    """
    b, d, l = u.shape
    g, n = B.shape[1], B.shape[2]
    f32 = {"device": u.device, "dtype": torch.float32}
    du, ddelta = torch.empty(b, d, l, **f32), torch.empty(b, d, l, **f32)
    dA_b, dh0 = torch.empty(b, d, n, **f32), torch.empty(b, d, n, **f32)
    dB, dC = torch.zeros(b, g, n, l, **f32), torch.zeros(b, g, n, l, **f32)
    dD_b = torch.empty(b, d, **f32) if D is not None else None
    dz = torch.empty(b, d, l, **f32) if z is not None else None
    grid = lambda meta: (b * g, triton.cdiv(d // g, meta["BLOCK_D"]))  # noqa: E731
    with on_device(u):
        _scan_bwd_kernel[grid](
            u, delta, A, B, C, D, z, delta_bias, states, dout, dlast,
            du, ddelta, dA_b, dB, dC, dD_b, dz, dh0,
            l, g, d // g, n, states.shape[1], size_class(b * g), size_class(l),
            *u.stride(), *delta.stride(), *strides(z, 3), *dout.stride(), *B.stride(), *C.stride(),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
            BLOCK_N=pow2(n), BLOCK_L=BLOCK_L,
        )  # fmt: skip
    dD = dD_b.sum(0) if D is not None else None
    ddelta_bias = ddelta.sum((0, 2)) if delta_bias is not None else None
    return du, ddelta, dA_b.sum(0), dB, dC, dD, dz, ddelta_bias, dh0


@triton.jit
def _state_update_kernel(
    state_ptr,
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    y_ptr,
    d,
    dg,
    n,
    s_sb,
    s_sd,
    s_sn,
    s_Ad,
    s_An,
    s_xb,
    s_xd,
    s_tb,
    s_td,
    s_zb,
    s_zd,
    s_Bb,
    s_Bg,
    s_Bn,
    s_Cb,
    s_Cg,
    s_Cn,
    s_yb,
    s_yd,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    bi = tl.program_id(0).to(tl.int64)
    dd = (tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)
    d_mask = dd < d
    gi = dd // dg
    nn = tl.arange(0, BLOCK_N).to(tl.int64)
    m = d_mask[:, None] & (nn < n)[None, :]
    x = tl.load(x_ptr + bi * s_xb + dd * s_xd, mask=d_mask, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + bi * s_tb + dd * s_td, mask=d_mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + dd, mask=d_mask, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = softplus(dt)
    A = tl.load(A_ptr + dd[:, None] * s_Ad + nn[None, :] * s_An, mask=m, other=0.0).to(tl.float32)
    Bv = tl.load(B_ptr + bi * s_Bb + gi[:, None] * s_Bg + nn[None, :] * s_Bn, mask=m, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + bi * s_Cb + gi[:, None] * s_Cg + nn[None, :] * s_Cn, mask=m, other=0.0).to(tl.float32)
    s_off = bi * s_sb + dd[:, None] * s_sd + nn[None, :] * s_sn
    h = tl.load(state_ptr + s_off, mask=m, other=0.0).to(tl.float32)
    h = tl.exp(dt[:, None] * A) * h + (dt * x)[:, None] * Bv
    tl.store(state_ptr + s_off, h, mask=m)
    y = tl.sum(h * Cv, axis=1)
    if HAS_D:
        y += x * tl.load(D_ptr + dd, mask=d_mask, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + bi * s_zb + dd * s_zd, mask=d_mask, other=0.0).to(tl.float32)
        y *= z * sigmoid(z)
    tl.store(y_ptr + bi * s_yb + dd * s_yd, y, mask=d_mask)


def state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus):
    """state (b, d, n) updated in place; x, dt, z (b, d); A (d, n) any strides; B, C (b, g, n); D, dt_bias (d,)
    contiguous. Returns y (b, d)."""
    b, d, n = state.shape
    y = torch.empty(b, d, device=x.device, dtype=x.dtype)
    block_d = 16
    with on_device(x):
        _state_update_kernel[(b, triton.cdiv(d, block_d))](
            state, x, dt, A, B, C, D, z, dt_bias, y,
            d, d // B.shape[1], n,
            *state.stride(), *A.stride(), *x.stride(), *dt.stride(), *strides(z, 2),
            *B.stride(), *C.stride(), *y.stride(),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None, SOFTPLUS=dt_softplus,
            BLOCK_D=block_d, BLOCK_N=pow2(n),
        )  # fmt: skip
    return y
