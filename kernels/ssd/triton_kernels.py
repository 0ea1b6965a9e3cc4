"""Triton kernels of the chunked SSD scan and their launchers (no autograd, no validation).

Three kernels cover the forward and the backward, because the backward of each step is the same kind of
contraction run the other way along the chunk (kernels/ssd/autograd.py has the algebra):

    chunk_state    out[b, c, h] = sum_{i in chunk c} w_i V_i^T U_i        (P x N per chunk; tl.dot)
                   w_i = exp(a_T - a_i) (state a chunk leaves at its end) or exp(a_i) (reverse)
    state_passing  s <- exp(a_T of chunk c) s + add[c] over the chunks, storing s before each update
                   (forward from the initial state, or reverse from the final state's gradient)
    chunk_scan     out_r = ws_r Q_r S + sum_{j <= r} (Q_r . K_j) exp(a_r - a_j) V_j      (causal), or
                   out_r = ws_r Q_r S + sum_{j >= r} (Q_r . K_j) exp(a_j - a_r) V_j      (reverse)
                   with ws_r = exp(a_r) or exp(a_T - a_r); S is the chunk's (Q-dim x V-dim) state.

a is the within-chunk cumulative sum of dt * A, (b, h, c, T) float32. Q, K, V, U are (b, l, heads or groups,
dim) with any strides; a tensor indexed by group serves ``heads_per`` consecutive heads. All offsets are 64-bit.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from longseq.kernels._triton import autotune_configs, on_device, pow2, size_class


def chunk_grid(b: int, h: int, n_chunks: int, tiles: int) -> tuple[int, int]:
    """The grid of chunk_state and chunk_scan: (b * h * n_chunks, tiles per chunk). The chunks go in grid x,
    which allows 2^31 - 1 programs, where grid y stops at 65535 (1M steps at T = 16)."""
    return (b * h * n_chunks, tiles)


@triton.jit
def _head_and_chunk(n_chunks):
    """This program's (batch * head) index and chunk (int64), from grid x = b * h * n_chunks."""
    pid = tl.program_id(0).to(tl.int64)
    return pid // n_chunks, pid % n_chunks


STATE_CONFIGS = (
    triton.Config({"BLOCK_P": 32, "BLOCK_N": 32, "BLOCK_K": 32}, num_warps=4),
    triton.Config({"BLOCK_P": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4),
    triton.Config({"BLOCK_P": 64, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=8),
    triton.Config({"BLOCK_P": 128, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=8),
)


@triton.autotune(
    configs=autotune_configs(*STATE_CONFIGS),
    key=["P", "N", "T", "work_class"],
)
@triton.jit(do_not_specialize=["work_class"])
def _chunk_state_kernel(
    v_ptr,
    u_ptr,
    a_ptr,
    out_ptr,
    l,
    h,
    P,
    N,
    T,
    n_chunks,
    work_class,  # size_class(b * h * n_chunks): an autotune key only, unused by the kernel
    v_per,
    u_per,
    s_vb,
    s_vl,
    s_vh,
    s_vp,
    s_ub,
    s_ul,
    s_uh,
    s_un,
    REVERSE: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_bh, c = _head_and_chunk(n_chunks)
    n_pb = tl.cdiv(P, BLOCK_P)
    pp = (tl.program_id(1) % n_pb) * BLOCK_P + tl.arange(0, BLOCK_P).to(tl.int64)
    nn = (tl.program_id(1) // n_pb) * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    bi, hi = pid_bh // h, pid_bh % h
    a_row = a_ptr + (pid_bh * n_chunks + c) * T
    a_end = tl.load(a_row + T - 1)
    v_base = v_ptr + bi * s_vb + (hi // v_per) * s_vh
    u_base = u_ptr + bi * s_ub + (hi // u_per) * s_uh
    acc = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, T, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K).to(tl.int64)
        t = c * T + kk
        t_ok = (kk < T) & (t < l)
        a = tl.load(a_row + kk, mask=kk < T, other=0.0)
        if REVERSE:
            w = tl.exp(a)
        else:
            w = tl.exp(a_end - a)
        w = tl.where(t_ok, w, 0.0)
        vt = tl.load(v_base + t[:, None] * s_vl + pp[None, :] * s_vp, mask=t_ok[:, None] & (pp < P)[None, :], other=0.0)
        ut = tl.load(u_base + t[:, None] * s_ul + nn[None, :] * s_un, mask=t_ok[:, None] & (nn < N)[None, :], other=0.0)
        acc += tl.dot(tl.trans(vt.to(tl.float32)), ut.to(tl.float32) * w[:, None])
    out = out_ptr + ((bi * n_chunks + c) * h + hi) * P * N
    tl.store(out + pp[:, None] * N + nn[None, :], acc, mask=(pp < P)[:, None] & (nn < N)[None, :])


@triton.jit
def _state_passing_kernel(
    add_ptr,
    a_ptr,
    init_ptr,
    seq_ptr,
    final_ptr,
    h,
    PN,
    T,
    n_chunks,
    HAS_INIT: tl.constexpr,
    REVERSE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid_bh = tl.program_id(0).to(tl.int64)
    e = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    m = e < PN
    bi, hi = pid_bh // h, pid_bh % h
    s = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_INIT:
        s = tl.load(init_ptr + pid_bh * PN + e, mask=m, other=0.0).to(tl.float32)
    for i in range(0, n_chunks):
        c = i
        if REVERSE:
            c = n_chunks - 1 - i
        off = ((bi * n_chunks + c) * h + hi) * PN + e  # (b, c, h, P, N)
        tl.store(seq_ptr + off, s, mask=m)
        decay = tl.exp(tl.load(a_ptr + (pid_bh * n_chunks + c) * T + T - 1))
        s = decay * s + tl.load(add_ptr + off, mask=m, other=0.0)
    tl.store(final_ptr + pid_bh * PN + e, s, mask=m)


# chunk_scan holds q and k (BLOCK_M x BLOCK_Q, all of DQ), S (BLOCK_Q x BLOCK_V), the accumulator and a
# BLOCK_M x BLOCK_M block. On sm_90a every larger tile spilled in some variant the launches produce (64-row
# blocks 136-512 B per thread with float32 operands, 32 x 64 up to 56 B; 64 x 128 with 8 warps also needed
# 230-295 KB of shared memory), so one config remains (benchmarks/RESULTS.md); larger tiles would need a loop
# over DQ.
SCAN_CONFIGS = (triton.Config({"BLOCK_M": 32, "BLOCK_V": 32}, num_warps=4),)


@triton.autotune(configs=autotune_configs(*SCAN_CONFIGS), key=["DQ", "DV", "T", "work_class"])
@triton.jit(do_not_specialize=["work_class"])
def _chunk_scan_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    s_ptr,
    a_ptr,
    out_ptr,
    l,
    h,
    DQ,
    DV,
    T,
    n_chunks,
    work_class,  # size_class(b * h * n_chunks): an autotune key only, unused by the kernel
    q_per,
    k_per,
    v_per,
    s_qb,
    s_ql,
    s_qh,
    s_qd,
    s_kb,
    s_kl,
    s_kh,
    s_kd,
    s_vb,
    s_vl,
    s_vh,
    s_vd,
    s_sb,
    s_sc,
    s_sh,
    s_sq,
    s_sv,
    s_ob,
    s_ol,
    s_oh,
    s_od,
    REVERSE: tl.constexpr,
    INTRA: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    pid_bh, c = _head_and_chunk(n_chunks)
    n_vb = tl.cdiv(DV, BLOCK_V)
    rb = tl.program_id(1) // n_vb
    vv = (tl.program_id(1) % n_vb) * BLOCK_V + tl.arange(0, BLOCK_V).to(tl.int64)
    bi, hi = pid_bh // h, pid_bh % h
    qd = tl.arange(0, BLOCK_Q).to(tl.int64)
    rr = rb * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)  # rows within the chunk
    t_r = c * T + rr
    r_ok = (rr < T) & (t_r < l)
    a_row = a_ptr + (pid_bh * n_chunks + c) * T
    a_r = tl.load(a_row + rr, mask=rr < T, other=0.0)
    q_base = q_ptr + bi * s_qb + (hi // q_per) * s_qh
    k_base = k_ptr + bi * s_kb + (hi // k_per) * s_kh
    v_base = v_ptr + bi * s_vb + (hi // v_per) * s_vh
    q = tl.load(
        q_base + t_r[:, None] * s_ql + qd[None, :] * s_qd, mask=r_ok[:, None] & (qd < DQ)[None, :], other=0.0
    ).to(tl.float32)

    # the state's part
    S = tl.load(
        s_ptr + bi * s_sb + c * s_sc + hi * s_sh + qd[:, None] * s_sq + vv[None, :] * s_sv,
        mask=(qd < DQ)[:, None] & (vv < DV)[None, :],
        other=0.0,
    )
    if REVERSE:
        ws = tl.exp(tl.load(a_row + T - 1) - a_r)
    else:
        ws = tl.exp(a_r)
    acc = tl.dot(q, S) * ws[:, None]

    # the chunk's own inputs, up to (or from) the diagonal block (none without INTRA: the state's part alone)
    if REVERSE:
        lo, hi_b = rb, tl.cdiv(T, BLOCK_M)
    else:
        lo, hi_b = 0, rb + 1
    if not INTRA:
        hi_b = lo
    for cb in range(lo, hi_b):
        cc = cb * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)
        t_c = c * T + cc
        c_ok = (cc < T) & (t_c < l)
        kt = tl.load(
            k_base + t_c[:, None] * s_kl + qd[None, :] * s_kd, mask=c_ok[:, None] & (qd < DQ)[None, :], other=0.0
        ).to(tl.float32)
        vt = tl.load(
            v_base + t_c[:, None] * s_vl + vv[None, :] * s_vd, mask=c_ok[:, None] & (vv < DV)[None, :], other=0.0
        ).to(tl.float32)
        a_c = tl.load(a_row + cc, mask=cc < T, other=0.0)
        if REVERSE:
            keep = (cc[None, :] >= rr[:, None]) & c_ok[None, :]
            gap = a_c[None, :] - a_r[:, None]
        else:
            keep = (cc[None, :] <= rr[:, None]) & c_ok[None, :]
            gap = a_r[:, None] - a_c[None, :]
        decay = tl.exp(tl.where(keep, gap, float("-inf")))
        acc += tl.dot(tl.dot(q, tl.trans(kt)) * decay, vt)
    tl.store(
        out_ptr + bi * s_ob + t_r[:, None] * s_ol + hi * s_oh + vv[None, :] * s_od,
        acc,
        mask=r_ok[:, None] & (vv < DV)[None, :],
    )


def chunk_state(v, u, a_cum, *, reverse: bool):
    """v (b, l, hv, P), u (b, l, hu, N) with hv, hu dividing h; a_cum (b, h, c, T). Returns (b, c, h, P, N)."""
    b, h, n_chunks, T = a_cum.shape
    P, N = v.shape[-1], u.shape[-1]
    out = torch.empty(b, n_chunks, h, P, N, device=v.device, dtype=torch.float32)
    grid = lambda meta: chunk_grid(b, h, n_chunks, triton.cdiv(P, meta["BLOCK_P"]) * triton.cdiv(N, meta["BLOCK_N"]))  # noqa: E731
    with on_device(v):
        _chunk_state_kernel[grid](
            v, u, a_cum, out,
            v.shape[1], h, P, N, T, n_chunks, size_class(b * h * n_chunks), h // v.shape[2], h // u.shape[2],
            *v.stride(), *u.stride(),
            REVERSE=reverse,
        )  # fmt: skip
    return out


def state_passing(add, a_cum, init, *, reverse: bool):
    """add (b, c, h, P, N) float32 contiguous; init (b, h, P, N) or None. Returns the states before each update
    (b, c, h, P, N) and the last one (b, h, P, N)."""
    b, n_chunks, h, P, N = add.shape
    seq = torch.empty_like(add)
    final = torch.empty(b, h, P, N, device=add.device, dtype=torch.float32)
    block = min(1024, pow2(P * N))
    with on_device(add):
        _state_passing_kernel[(b * h, triton.cdiv(P * N, block))](
            add, a_cum, init, seq, final,
            h, P * N, a_cum.shape[-1], n_chunks,
            HAS_INIT=init is not None, REVERSE=reverse, BLOCK=block,
        )  # fmt: skip
    return seq, final


def chunk_scan(q, k, v, states, a_cum, *, reverse: bool, transpose_states: bool, intra: bool = True):
    """q, k (b, l, ·, DQ); v (b, l, ·, DV); states (b, c, h, P, N) holding S as (DQ, DV), or as its transpose
    when ``transpose_states``. Returns (b, l, h, DV) float32; without ``intra`` only the state's part
    ws_r Q_r S (k and v are not read)."""
    b, h, n_chunks, T = a_cum.shape
    l, DQ, DV = q.shape[1], q.shape[-1], v.shape[-1]
    out = torch.empty(b, l, h, DV, device=q.device, dtype=torch.float32)
    s_b, s_c, s_h, s_p, s_n = states.stride()
    s_q, s_v = (s_n, s_p) if transpose_states else (s_p, s_n)
    grid = lambda meta: chunk_grid(b, h, n_chunks, triton.cdiv(T, meta["BLOCK_M"]) * triton.cdiv(DV, meta["BLOCK_V"]))  # noqa: E731
    with on_device(q):
        _chunk_scan_kernel[grid](
            q, k, v, states, a_cum, out,
            l, h, DQ, DV, T, n_chunks, size_class(b * h * n_chunks), h // q.shape[2], h // k.shape[2], h // v.shape[2],
            *q.stride(), *k.stride(), *v.stride(), s_b, s_c, s_h, s_q, s_v, *out.stride(),
            REVERSE=reverse, INTRA=intra, BLOCK_Q=pow2(DQ, 16),
        )  # fmt: skip
    return out


@triton.jit
def _dda_intra_kernel(
    dy_ptr,
    x_ptr,
    c_ptr,
    b_ptr,
    a_ptr,
    out_ptr,
    l,
    h,
    P,
    N,
    T,
    n_chunks,
    n_rb,
    g_per,
    s_bb,
    s_bl,
    s_bh,
    s_bn,
    s_cb,
    s_cl,
    s_ch,
    s_cn,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """One block of rows i of one chunk: its share of F_k = sum_{i >= k} sum_{j < k} M_ij, with
    M_ij = (dy_i . X_j)(C_i . B_j) exp(a_i - a_j) for j <= i, for every column k of the chunk (zero past i).
    Every term is added, none subtracted: nothing cancels (the stable form of mamba_ssm's ddA_cumsum).
    dy and X are (b, l, h, P) float32 contiguous; out is (b, h, c, n_rb, T), written up to this row block."""
    pid_bh, c = _head_and_chunk(n_chunks)
    rb = tl.program_id(1).to(tl.int64)
    bi, hi = pid_bh // h, pid_bh % h
    pp = tl.arange(0, BLOCK_P).to(tl.int64)
    nn = tl.arange(0, BLOCK_N).to(tl.int64)
    rr = rb * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)
    t_r = c * T + rr
    r_ok = (rr < T) & (t_r < l)
    a_row = a_ptr + (pid_bh * n_chunks + c) * T
    a_r = tl.load(a_row + rr, mask=rr < T, other=0.0)
    seq = (bi * l * h + hi) * P  # (b, l, h, P) contiguous: + t * h * P + p
    dy = tl.load(dy_ptr + seq + t_r[:, None] * h * P + pp[None, :], mask=r_ok[:, None] & (pp < P)[None, :], other=0.0)
    gi = hi // g_per
    cq = tl.load(
        c_ptr + bi * s_cb + gi * s_ch + t_r[:, None] * s_cl + nn[None, :] * s_cn,
        mask=r_ok[:, None] & (nn < N)[None, :],
        other=0.0,
    ).to(tl.float32)
    carry = tl.zeros([BLOCK_M], dtype=tl.float32)  # sum of M_ij over the column blocks already done, per row
    out_row = out_ptr + ((pid_bh * n_chunks + c) * n_rb + rb) * T
    for cb in range(0, rb + 1):
        cc = cb * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)
        t_c = c * T + cc
        c_ok = (cc < T) & (t_c < l)
        xj = tl.load(
            x_ptr + seq + t_c[:, None] * h * P + pp[None, :], mask=c_ok[:, None] & (pp < P)[None, :], other=0.0
        )
        bj = tl.load(
            b_ptr + bi * s_bb + gi * s_bh + t_c[:, None] * s_bl + nn[None, :] * s_bn,
            mask=c_ok[:, None] & (nn < N)[None, :],
            other=0.0,
        ).to(tl.float32)
        a_c = tl.load(a_row + cc, mask=cc < T, other=0.0)
        keep = (cc[None, :] <= rr[:, None]) & c_ok[None, :] & r_ok[:, None]
        M = tl.dot(dy, tl.trans(xj)) * tl.dot(cq, tl.trans(bj))
        M = tl.where(keep, M * tl.exp(tl.where(keep, a_r[:, None] - a_c[None, :], 0.0)), 0.0)
        G = carry[:, None] + tl.cumsum(M, axis=1) - M  # sum_{j < k} M_ij for the columns k of this block
        F = tl.sum(tl.where((rr[:, None] >= cc[None, :]) & r_ok[:, None], G, 0.0), axis=0)
        tl.store(out_row + cc, F, mask=cc < T)
        carry += tl.sum(M, axis=1)


def dda_intra(dy, X, C, B, a_cum):
    """The chunk-internal part of the gradient of each step's dt A: F (b, l, h) float32, where
    F_k = sum_{i >= k > j} (dy_i . X_j)(C_i . B_j) exp(a_i - a_j) within each chunk. dy, X (b, l, h, P) float32
    contiguous; C, B (b, l, g, N) any strides."""
    b, h, n_chunks, T = a_cum.shape
    l, P, N = dy.shape[1], dy.shape[-1], B.shape[-1]
    block_m = 32
    n_rb = triton.cdiv(T, block_m)
    out = torch.zeros(
        b, h, n_chunks, n_rb, T, device=dy.device, dtype=torch.float32
    )  # columns after a row block stay 0
    with on_device(dy):
        _dda_intra_kernel[chunk_grid(b, h, n_chunks, n_rb)](
            dy, X, C, B, a_cum, out,
            l, h, P, N, T, n_chunks, n_rb, h // B.shape[2], *B.stride(), *C.stride(),
            BLOCK_P=pow2(P, 16), BLOCK_N=pow2(N, 16), BLOCK_M=block_m, num_warps=4,
        )  # fmt: skip
    return out.sum(3).reshape(b, h, n_chunks * T)[:, :, :l].transpose(1, 2)
