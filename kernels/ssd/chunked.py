"""The chunked SSD algorithm in pure PyTorch (the torch backend): quadratic attention-like work inside chunks
of T steps, a linear recurrence over chunk states between them ("Listing 1" of the Mamba-2 paper)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longseq.kernels._backend import up
from longseq.kernels.ssd.reference import finish, prepare_dt


def segsum(a: torch.Tensor) -> torch.Tensor:
    """a (..., T) -> (..., T, T) with out[i, j] = a[j+1] + ... + a[i] for j <= i and -inf above the diagonal.

    Built as a masked cumsum (not a difference of cumsums) so that long chunks stay accurate.
    """
    T = a.shape[-1]
    a = a[..., None].expand(*a.shape, T)  # a[..., i, j] = a_i
    strict = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=-1)
    out = torch.cumsum(a.masked_fill(~strict, 0.0), dim=-2)
    return out.masked_fill(~torch.tril(torch.ones_like(strict)), float("-inf"))


def ssd_scan_chunked(
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
    """Same contract as `ssd_scan_ref`; ``chunk_size`` (T) sets the work split (32-64 is fastest on CPU).

    B and C are never repeated over the heads of their group: C_i . B_j is computed once per group and chunk,
    and the state contractions batch a group's heads into one matrix product.
    """
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    hg = h // g
    T = chunk_size
    pad = (-l) % T
    c = (l + pad) // T
    dt = prepare_dt(dt, dt_bias, dt_softplus)
    # Padded steps have dt = 0: no decay and no input, so they change neither outputs nor the final state.
    dts = F.pad(dt, (0, 0, 0, pad))
    X = (F.pad(up(x), (0, 0, 0, 0, 0, pad)) * dts[..., None]).view(b, c, T, g, hg, p)
    Bc = F.pad(up(B), (0, 0, 0, 0, 0, pad)).view(b, c, T, g, n)
    Cc = F.pad(up(C), (0, 0, 0, 0, 0, pad)).view(b, c, T, g, n)
    a = (dts * up(A)).view(b, c, T, g, hg).permute(0, 1, 3, 4, 2)  # (b, c, g, hg, T)
    a_cum = torch.cumsum(a, dim=-1)

    # 1. within chunks: y_i = sum_{j <= i} (C_i . B_j) exp(a_{j+1} + ... + a_i) X_j
    CB = torch.einsum("bcign,bcjgn->bcgij", Cc, Bc)  # (b, c, g, T, T)
    scores = CB[:, :, :, None] * torch.exp(segsum(a))  # (b, c, g, hg, T, T)
    y = torch.einsum("bcghij,bcjghp->bcighp", scores, X)

    # 2. the state each chunk contributes by its end
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum).permute(0, 1, 4, 2, 3)  # (b, c, T, g, hg)
    chunk_states = torch.einsum("bcjgn,bcjghp->bcghpn", Bc, X * decay_to_end[..., None])

    # 3. recurrence over chunks: the state entering each chunk
    state = up(x).new_zeros(b, g, hg, p, n) if initial_states is None else up(initial_states).view(b, g, hg, p, n)
    chunk_decay = torch.exp(a_cum[..., -1])  # (b, c, g, hg)
    entering = []
    for s_c, a_c in zip(chunk_states.unbind(1), chunk_decay.unbind(1)):
        entering.append(state)
        state = a_c[..., None, None] * state + s_c
    prev = torch.stack(entering, dim=1)  # (b, c, g, hg, p, n)

    # 4. the entering state's contribution inside each chunk
    y = y + torch.einsum("bcign,bcghpn->bcighp", Cc, prev) * torch.exp(a_cum).permute(0, 1, 4, 2, 3)[..., None]
    y = y.reshape(b, c * T, h, p)[:, :l]
    out = finish(y, x, D, z).to(x.dtype)
    return (out, state.reshape(b, h, p, n)) if return_final_states else out
