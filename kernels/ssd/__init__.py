"""Mamba-2 SSD scan: `ssd_scan`, a drop-in for mamba_ssm's `mamba_chunk_scan_combined`."""

from __future__ import annotations

import torch

from longseq.kernels import _backend
from longseq.kernels.ssd.chunked import ssd_scan_chunked
from longseq.kernels.ssd.reference import ssd_scan_ref

__all__ = ["ssd_scan", "ssd_scan_chunked", "ssd_scan_ref"]

# The chunk length the torch backend uses on the CPU at most: the results do not depend on it, and 64 measured
# fastest there (the GPU default of 256 is ~1.5x slower; benchmarks/RESULTS.md).
CPU_CHUNK_SIZE = 64


def ssd_scan(
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
    *,
    backend: str | None = None,
):
    """Mamba-2 scan: S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_t^T, y_t = S_t C_t + D x_t, out = y * silu(z).

    Args:
        x: (b, l, h, p). dt: (b, l, h). A: (h,). B, C: (b, l, g, n), g dividing h. chunk_size: steps per chunk
            (a work split that does not change the function; the torch backend on the CPU caps it at 64).
        D: (h,) or (h, p). z: (b, l, h, p). dt_bias: (h,). initial_states: (b, h, p, n).

    Returns:
        y (b, l, h, p); with ``return_final_states`` also the final states (b, h, p, n) in float32.
    """
    if x.dim() != 4 or dt.shape != x.shape[:3] or A.shape != (x.shape[2],):
        raise ValueError(
            f"expected x (b, l, h, p), dt (b, l, h), A (h,); got {tuple(x.shape)}, {tuple(dt.shape)}, {tuple(A.shape)}"
        )
    b, l, h, p = x.shape
    for name, t in (("B", B), ("C", C)):
        if t.dim() != 4 or t.shape[:2] != (b, l) or h % t.shape[2] != 0:
            raise ValueError(f"{name} must be (b, l, g, n) with g dividing h={h}; got {tuple(t.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive; got {chunk_size}")
    n = B.shape[-1]
    if initial_states is not None and initial_states.shape != (b, h, p, n):
        raise ValueError(f"initial_states must be (b, h, p, n) = {(b, h, p, n)}; got {tuple(initial_states.shape)}")
    if D is not None and D.shape not in ((h,), (h, p)):
        raise ValueError(f"D must be (h,) or (h, p) = {(h, p)}; got {tuple(D.shape)}")
    if z is not None and z.shape != x.shape:
        raise ValueError(f"z must be (b, l, h, p) like x; got {tuple(z.shape)}")
    if dt_bias is not None and dt_bias.shape != (h,):
        raise ValueError(f"dt_bias must be (h={h},); got {tuple(dt_bias.shape)}")
    choice = _backend.choose(x, backend)
    if choice == "triton":
        from longseq.kernels.ssd.autograd import ssd_scan_triton

        return ssd_scan_triton(
            x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, initial_states, return_final_states
        )
    if choice == "reference":
        return ssd_scan_ref(x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, initial_states, return_final_states)
    if not x.is_cuda:
        chunk_size = min(chunk_size, CPU_CHUNK_SIZE)
    return ssd_scan_chunked(x, dt, A, B, C, chunk_size, D, z, dt_bias, dt_softplus, initial_states, return_final_states)
