"""Readable references for the Mamba-1 selective scan (the spec every backend must match).

Discretisation as in mamba_ssm: zero-order hold for A, Euler for B::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = <C_t, h_t> + D * u_t,   out_t = y_t * silu(z_t)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longseq.kernels._backend import up


def expand_groups(BC: torch.Tensor, d: int) -> torch.Tensor:
    """(b, n, l) or (b, g, n, l) -> (b, d, n, l) view/broadcast: group g serves channels [g*d/g, (g+1)*d/g)."""
    if BC.dim() == 3:
        return BC.unsqueeze(1).expand(-1, d, -1, -1)
    g = BC.shape[1]
    return BC.repeat_interleave(d // g, dim=1)


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
):
    """Selective scan, one time step at a time (float32 accumulation; float64 stays float64).

    Args:
        u, delta: (b, d, l). A: (d, n). B, C: (b, n, l) or (b, g, n, l). D, delta_bias: (d,). z: (b, d, l).
        initial_state: (b, d, n) state before the first step (zeros when None).

    Returns:
        out (b, d, l) in u's dtype, and the last state (b, d, n) float32 when ``return_last_state``.
    """
    dtype = u.dtype
    b, d, l = u.shape
    u, delta, A = up(u), up(delta), up(A)
    if delta_bias is not None:
        delta = delta + up(delta_bias)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    B, C = expand_groups(up(B), d), expand_groups(up(C), d)
    state = u.new_zeros(b, d, A.shape[1]) if initial_state is None else up(initial_state)
    ys = []
    # unbind, not x[..., t]: indexing inside the loop would make autograd quadratic in l.
    for u_t, delta_t, B_t, C_t in zip(u.unbind(-1), delta.unbind(-1), B.unbind(-1), C.unbind(-1)):
        state = torch.exp(delta_t[..., None] * A) * state + (delta_t * u_t)[..., None] * B_t
        ys.append((state * C_t).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(b, d, 0)
    if D is not None:
        y = y + u * up(D)[:, None]
    if z is not None:
        y = y * F.silu(up(z))
    out = y.to(dtype)
    return (out, state) if return_last_state else out


def selective_state_update_ref(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
) -> torch.Tensor:
    """One recurrent step; ``state`` is updated in place.

    Args:
        state: (b, d, n). x, dt, z: (b, d). A: (d, n). B, C: (b, n) or (b, g, n). D, dt_bias: (d,).

    Returns:
        y (b, d) in x's dtype.
    """
    d = x.shape[1]
    dt = up(dt)
    if dt_bias is not None:
        dt = dt + up(dt_bias)
    if dt_softplus:
        dt = F.softplus(dt)
    if B.dim() == 3:
        B, C = B.repeat_interleave(d // B.shape[1], dim=1), C.repeat_interleave(d // C.shape[1], dim=1)
    else:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    new = torch.exp(dt[..., None] * up(A)) * up(state) + (dt * up(x))[..., None] * up(B)
    state.copy_(new)
    y = (new * up(C)).sum(-1)
    if D is not None:
        y = y + up(x) * up(D)
    if z is not None:
        y = y * F.silu(up(z))
    return y.to(x.dtype)
