"""Mamba-1 selective scan: `selective_scan` (a drop-in for mamba_ssm's `selective_scan_fn`) and the decode
step `selective_state_update`."""

from __future__ import annotations

import torch

from longseq.kernels import _backend
from longseq.kernels.selective_scan.reference import selective_scan_ref, selective_state_update_ref

__all__ = ["selective_scan", "selective_scan_ref", "selective_state_update", "selective_state_update_ref"]


def _check_scan(u, delta, A, B, C, D, z, delta_bias, initial_state) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be (b, d, l); got {tuple(u.shape)} and {tuple(delta.shape)}")
    b, d, l = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d={d}, n); got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        ok = (t.dim() == 3 and t.shape == (b, n, l)) or (
            t.dim() == 4 and t.shape[0] == b and t.shape[2:] == (n, l) and d % t.shape[1] == 0
        )
        if not ok:
            raise ValueError(f"{name} must be (b, n, l) or (b, g, n, l) with g dividing d; got {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (d,):
            raise ValueError(f"{name} must be (d={d},); got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must be (b, d, l) like u; got {tuple(z.shape)}")
    if initial_state is not None and initial_state.shape != (b, d, n):
        raise ValueError(f"initial_state must be (b, d, n) = {(b, d, n)}; got {tuple(initial_state.shape)}")


def selective_scan(
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
    *,
    initial_state: torch.Tensor | None = None,
    backend: str | None = None,
):
    """Selective scan (Mamba-1), with mamba_ssm's `selective_scan_fn` arguments and semantics.

    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t;  y_t = C_t h_t + D u_t;  out = y * silu(z).

    Args:
        u, delta: (b, d, l). A: (d, n), real. B, C: (b, n, l) or grouped (b, g, n, l).
        D, delta_bias: (d,). z: (b, d, l) gate. delta_softplus: apply softplus to delta + delta_bias.
        initial_state: (b, d, n) state to continue from (an extension; zeros when None).
        backend: "reference", "torch", "triton" or None (automatic).

    Returns:
        out (b, d, l) in u's dtype; with ``return_last_state`` also the final state (b, d, n) in float32.
    """
    _check_scan(u, delta, A, B, C, D, z, delta_bias, initial_state)
    choice = _backend.choose(u, backend)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state)
    if choice == "triton":
        from longseq.kernels.selective_scan.autograd import selective_scan_triton

        return selective_scan_triton(*args)
    if choice == "torch":
        from longseq.kernels.selective_scan.torch_scan import selective_scan_torch

        return selective_scan_torch(*args)
    return selective_scan_ref(*args)


def selective_state_update(
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
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """One decode step of the selective scan; ``state`` (b, d, n) is updated in place.

    Args:
        state: (b, d, n). x, dt, z: (b, d). A: (d, n). B, C: (b, n) or (b, g, n). D, dt_bias: (d,).

    Returns:
        y (b, d) in x's dtype.
    """
    b, d, n = state.shape
    if x.shape != (b, d) or dt.shape != (b, d) or A.shape != (d, n):
        raise ValueError(
            f"expected state (b, d, n), x and dt (b, d), A (d, n); got state {tuple(state.shape)}, "
            f"x {tuple(x.shape)}, dt {tuple(dt.shape)}, A {tuple(A.shape)}"
        )
    for name, t in (("B", B), ("C", C)):
        if not ((t.dim() == 2 and t.shape == (b, n)) or (t.dim() == 3 and t.shape[0] == b and t.shape[2] == n)):
            raise ValueError(f"{name} must be (b, n) or (b, g, n); got {tuple(t.shape)}")
    choice = _backend.choose(x, backend)
    if choice == "triton":
        from longseq.kernels.selective_scan.autograd import selective_state_update_triton

        return selective_state_update_triton(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    if choice == "torch":
        from longseq.kernels.selective_scan.torch_scan import selective_state_update_torch

        return selective_state_update_torch(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    return selective_state_update_ref(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
