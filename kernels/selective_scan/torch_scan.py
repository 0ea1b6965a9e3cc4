"""The torch backend of the selective scan (CPU and GPUs without Triton)."""

from __future__ import annotations

from kernels.selective_scan.reference import selective_scan_ref


def selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state):
    """Same contract as `selective_scan_ref`. The per-step loop with `unbind` is linear in l under autograd."""
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state)
