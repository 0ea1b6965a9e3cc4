"""The torch backend of the selective scan: a streaming chunked scan with its own backward (CPU, and GPUs
without Triton).

Why not the per-step loop of the reference: under autograd every step records several ops and keeps their
(b, d, n) operands alive for backward, so time and memory both carry a large constant per step. Here a custom
autograd Function walks the sequence in chunks of T steps, in a time-major layout where one step of the
recurrence is a single in-place `addcmul_` over contiguous memory:

    forward   per chunk: dA = exp(delta A) and H = delta u B, both (T, b, d, n); then H_t += dA_t * H_{t-1}
              step by step; y = <H, C> by einsum. Only the state entering each chunk is kept (l / T of
              them), never the (b, l, d, n) states.
    backward  chunks in reverse: recompute dA and H from the saved entering state, run the adjoint recurrence
              G_t = C_t dy_t + dA_{t+1} G_{t+1} the same way, then every gradient of the chunk in a few batched
              contractions. Memory is three chunk buffers plus the l / T states, whatever l is.

delta_bias, softplus, D and the z gate are elementwise on (b, d, l) and stay plain autograd around it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from longseq.kernels._backend import up

# exp(x) = exp2(x log2 e): ATen's float32 exp2 runs about 8x faster than its exp on the CPU (0.33 against 2.6 ms
# per million; the decays exp(delta A) are the largest elementwise pass of the scan), within 2e-7 relative of it
# over the decays' range.
LOG2E = 1 / math.log(2)

# Elements in one (b, T, d, n) chunk buffer; three are live in backward. 2**20 (4 MiB in float32) keeps them
# near the CPU's L2 cache; the chunk length follows from it (benchmarks/RESULTS.md has the sweep).
CHUNK_ELEMENTS = 2**20


def chunk_length(b: int, d: int, n: int) -> int:
    """Steps per chunk for a (b, d, n) state: the buffer budget over the state size, clamped to [8, 256]."""
    return max(8, min(256, CHUNK_ELEMENTS // max(1, b * d * n)))


def _time_major(x: torch.Tensor) -> torch.Tensor:
    """(b, d, l) -> (b, l, d) contiguous; free when x is already a transposed view of (b, l, d) memory."""
    t = x.transpose(1, 2)
    if t.is_contiguous():
        return t
    out = torch.empty_like(t, memory_format=torch.contiguous_format)
    for i in range(x.shape[0]):  # 2-D copies take ATen's blocked transpose path; a 3-D permute copy does not
        out[i].copy_(t[i])
    return out


def _is_time_major(x: torch.Tensor) -> bool:
    return x.transpose(1, 2).is_contiguous()


def _as_input(y: torch.Tensor, time_major: bool) -> torch.Tensor:
    """y (b, l, d) contiguous -> (b, d, l), in time-major memory when the input was (so later elementwise ops
    see one layout), else contiguous."""
    if time_major:
        return y.transpose(1, 2)
    out = y.new_empty(y.shape[0], y.shape[2], y.shape[1])
    for i in range(y.shape[0]):
        out[i].copy_(y[i].t())
    return out


class _ChunkedScan(torch.autograd.Function):
    """y_t = <C_t, h_t>, h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t.

    Inputs: u, delta (b, d, l); A (d, n); B, C (b, g, n, l); h0 (b, d, n) or None; chunk (steps). Outputs: y
    (b, d, l) and the last state (b, d, n).

    The chunk buffers are step-major, (T, b, d, n), and B, C are kept as (l, b, g, n): a chunk's states are then
    one contiguous block whatever b is, so the contractions over n or d run on them without the copy a
    (b, T, ...) slice needs for b > 1. u, delta and y stay (b, l, d); a chunk reads them as (T, b, d) views.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, h0, chunk: int):
        u_t, delta_t = _time_major(u), _time_major(delta)  # (b, l, d)
        B_t, C_t = B.permute(3, 0, 1, 2).contiguous(), C.permute(3, 0, 1, 2).contiguous()  # (l, b, g, n)
        b, l, d = u_t.shape
        g, n = B_t.shape[2], B_t.shape[3]
        starts = u_t.new_empty(0 if l == 0 else (l - 1) // chunk + 1, b, d, n)
        y = torch.empty_like(u_t)
        dA, H = u_t.new_empty(chunk, b, d, n), u_t.new_empty(chunk + 1, b, d, n)
        steps = dA.unbind(0), H.unbind(0)  # the per-step views, made once (a chunk's T steps are the first T)
        h = u_t.new_zeros(b, d, n) if h0 is None else h0
        A2 = A * LOG2E
        for c, t0 in enumerate(range(0, l, chunk)):
            sl = slice(t0, min(t0 + chunk, l))
            T = sl.stop - t0
            starts[c] = h
            u_c, delta_c = u_t[:, sl].transpose(0, 1), delta_t[:, sl].transpose(0, 1)  # (T, b, d)
            _chunk_states(u_c, delta_c, A2, B_t[sl], h, dA[:T], H[: T + 1], steps)
            states = H[1 : T + 1].view(T, b, g, d // g, n)
            y[:, sl] = torch.einsum("tbgen,tbgn->tbge", states, C_t[sl]).reshape(T, b, d).transpose(0, 1)
            h = H[T].clone()
        ctx.save_for_backward(u_t, delta_t, A, B_t, C_t, starts)
        ctx.chunk, ctx.has_h0 = chunk, h0 is not None
        ctx.time_major = _is_time_major(u), _is_time_major(delta)
        return _as_input(y, ctx.time_major[0]), h

    @staticmethod
    def backward(ctx, dy, dlast):
        u_t, delta_t, A, B_t, C_t, starts = ctx.saved_tensors
        chunk = ctx.chunk
        b, l, d = u_t.shape
        g, n = B_t.shape[2], B_t.shape[3]
        dg = d // g
        dy_t = _time_major(dy)
        du, ddelta = torch.empty_like(u_t), torch.empty_like(delta_t)
        dB, dC = torch.empty_like(B_t), torch.empty_like(C_t)
        dA_param = torch.zeros_like(A)
        carry = dlast.clone()  # dL/dh at the end of the chunk being processed
        A2 = A * LOG2E
        dA, H, G = u_t.new_empty(chunk, b, d, n), u_t.new_empty(chunk + 1, b, d, n), u_t.new_empty(chunk, b, d, n)
        ones = u_t.new_ones(n, 1)
        steps_dA, steps_H, steps_G = dA.unbind(0), H.unbind(0), G.unbind(0)
        for c in reversed(range(starts.shape[0])):
            sl = slice(c * chunk, min((c + 1) * chunk, l))
            T = sl.stop - sl.start
            dAc, Hc, Gc = dA[:T], H[: T + 1], G[:T]
            u_c, delta_c, dy_c = (x[:, sl].transpose(0, 1) for x in (u_t, delta_t, dy_t))  # (T, b, d)
            delta_u = delta_c * u_c
            _chunk_states(u_c, delta_c, A2, B_t[sl], starts[c], dAc, Hc, (steps_dA, steps_H), delta_u=delta_u)
            torch.mul(dy_c.reshape(T, b, g, dg, 1), C_t[sl, :, :, None, :], out=Gc.view(T, b, g, dg, n))
            Gc[T - 1].add_(carry)
            for t in range(T - 2, -1, -1):
                steps_G[t].addcmul_(steps_dA[t + 1], steps_G[t + 1])
            carry = dAc[0] * Gc[0]
            G5, H5 = Gc.view(T, b, g, dg, n), Hc[1:].view(T, b, g, dg, n)
            # einsum, not matmul: it contracts the (d, n) blocks without copying a transposed operand
            GB = torch.einsum("tbgen,tbgn->tbge", G5, B_t[sl]).reshape(T, b, d)
            dB[sl] = torch.einsum("tbgen,tbge->tbgn", G5, delta_u.reshape(T, b, g, dg))
            dC[sl] = torch.einsum("tbgen,tbge->tbgn", H5, dy_c.reshape(T, b, g, dg))
            # dL/d(delta_t A) = G_t h_{t-1} dA_t, written over dA; then G's buffer takes it times delta, then times A.
            # Sum over n as a product with ones: ATen's sum over a last axis of 16 runs 1.5x slower, and the einsum
            # over (d, n) pairs 2.4x (a batched product per d).
            M = dAc.mul_(Gc).mul_(Hc[:T])
            dA_param += torch.mul(M, delta_c[..., None], out=Gc).sum((0, 1))
            torch.mul(delta_c, GB, out=du[:, sl].transpose(0, 1))
            MA = torch.mul(M, A, out=Gc).view(T, b, d, n) @ ones
            torch.addcmul(MA.view(T, b, d), u_c, GB, out=ddelta[:, sl].transpose(0, 1))
        return (
            _as_input(du, ctx.time_major[0]),
            _as_input(ddelta, ctx.time_major[1]),
            dA_param,
            dB.permute(1, 2, 3, 0),
            dC.permute(1, 2, 3, 0),
            carry if ctx.has_h0 else None,
            None,
        )


def _chunk_states(u, delta, A2, B, h, dA, H, steps, *, delta_u=None) -> None:
    """One chunk's decays and states, in place.

    Args:
        u, delta: (T, b, d) (views of (b, l, d) memory). A2: (d, n), A log2(e) (see `LOG2E`). B: (T, b, g, n).
        h: (b, d, n), the state entering the chunk.
        dA: (T, b, d, n) buffer, filled with exp(delta A). H: (T + 1, b, d, n) buffer, filled with h and the T states.
        steps: the per-step views (unbind) of the whole dA and H buffers these are the first T (+ 1) steps of.
    """
    T, b, d = u.shape
    g, n = B.shape[2], B.shape[3]
    torch.mul(delta[..., None], A2, out=dA).exp2_()
    delta_u = delta * u if delta_u is None else delta_u
    torch.mul(delta_u.reshape(T, b, g, d // g, 1), B[:, :, :, None, :], out=H[1:].view(T, b, g, d // g, n))
    H[0] = h
    steps_dA, steps_H = steps
    for a, h_prev, h_next in zip(steps_dA[:T], steps_H[:T], steps_H[1 : T + 1]):
        h_next.addcmul_(a, h_prev)


def selective_scan_torch(
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state, *, chunk_size=None
):
    """Same contract as `selective_scan_ref`; ``chunk_size`` overrides `chunk_length` (tests use small chunks)."""
    dtype = u.dtype
    b, d, _ = u.shape
    n = A.shape[1]
    u32, delta = up(u), up(delta)
    if delta_bias is not None:
        delta = delta + up(delta_bias)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    B, C = (t.unsqueeze(1) if t.dim() == 3 else t for t in (up(B), up(C)))
    h0 = None if initial_state is None else up(initial_state).contiguous()
    chunk = chunk_size or chunk_length(b, d, n)
    y, last = _ChunkedScan.apply(u32, delta, up(A).contiguous(), B, C, h0, chunk)
    if D is not None:
        y = torch.addcmul(y, u32, up(D)[:, None])  # one pass, where y + u D makes two
    if z is not None:
        y = y * F.silu(up(z))
    out = y.to(dtype)
    return (out, last) if return_last_state else out


def selective_state_update_torch(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus):
    """Same contract as `selective_state_update_ref`, in fewer and in-place ops (a decode step is op-bound)."""
    b, d, n = state.shape
    g = 1 if B.dim() == 2 else B.shape[1]
    dt = up(dt) if dt_bias is None else up(dt) + up(dt_bias)
    if dt_softplus:
        dt = F.softplus(dt)
    x32 = up(x)
    h = up(state)  # the state itself when it is float32 or float64: updated in place
    h5 = h.view(b, g, d // g, n)
    h.mul_(torch.exp(dt[..., None] * up(A)))
    h5.addcmul_((dt * x32).view(b, g, d // g, 1), up(B).view(b, g, 1, n))
    y = torch.matmul(h5, up(C).view(b, g, n, 1)).view(b, d)
    if h is not state:
        state.copy_(h)
    if D is not None:
        y = torch.addcmul(y, x32, up(D))
    if z is not None:
        y = y * F.silu(up(z))
    return y.to(x.dtype)
