"""Readable reference for the Mamba-2 state-space-dual (SSD) scan: one time step at a time.

Per head h (state (p, n)), with a = exp(dt_t * A_h):

    S_t = a * S_{t-1} + dt_t * x_t B_t^T        y_t = S_t C_t + D x_t,   out = y * silu(z)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longseq.kernels._backend import up


def prepare_dt(dt: torch.Tensor, dt_bias: torch.Tensor | None, dt_softplus: bool) -> torch.Tensor:
    """dt (b, l, h) -> float32 step sizes with the bias and softplus applied."""
    dt = up(dt)
    if dt_bias is not None:
        dt = dt + up(dt_bias)
    return F.softplus(dt) if dt_softplus else dt


def finish(y: torch.Tensor, x: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """Add the D skip ((h,) or (h, p)) and the silu(z) gate to y (b, l, h, p), in float32."""
    if D is not None:
        D = up(D)
        y = y + up(x) * (D[:, None] if D.dim() == 1 else D)
    if z is not None:
        y = y * F.silu(up(z))
    return y


def ssd_scan_ref(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    initial_states: torch.Tensor | None = None,
    return_final_states: bool = False,
):
    """Sequential SSD recurrence; ``chunk_size`` is accepted for the common signature and does not change results.

    Args:
        x: (b, l, h, p). dt: (b, l, h). A: (h,). B, C: (b, l, g, n), g dividing h. D: (h,) or (h, p).
        z: (b, l, h, p). dt_bias: (h,). initial_states: (b, h, p, n).

    Returns:
        y (b, l, h, p) in x's dtype; with ``return_final_states`` also the final states (b, h, p, n) float32.
    """
    b, l, h, p = x.shape
    n = B.shape[-1]
    dt = prepare_dt(dt, dt_bias, dt_softplus)
    B = up(B).repeat_interleave(h // B.shape[2], dim=2)  # (b, l, h, n)
    C = up(C).repeat_interleave(h // C.shape[2], dim=2)
    state = up(x).new_zeros(b, h, p, n) if initial_states is None else up(initial_states)
    decay = torch.exp(dt * up(A))  # (b, l, h)
    ys = []
    for x_t, dt_t, a_t, B_t, C_t in zip(up(x).unbind(1), dt.unbind(1), decay.unbind(1), B.unbind(1), C.unbind(1)):
        state = a_t[..., None, None] * state + (dt_t[..., None] * x_t)[..., None] * B_t[:, :, None, :]
        ys.append((state * C_t[:, :, None, :]).sum(-1))
    y = torch.stack(ys, dim=1) if ys else up(x).new_zeros(b, 0, h, p)
    out = finish(y, x, D, z).to(x.dtype)
    return (out, state) if return_final_states else out
