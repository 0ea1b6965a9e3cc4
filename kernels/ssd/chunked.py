"""The chunked SSD algorithm in pure PyTorch (the torch backend): quadratic attention-like work inside chunks
of T steps, a linear recurrence over chunk states between them ("Listing 1" of the Mamba-2 paper)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels._backend import up
from kernels.ssd.reference import finish, prepare_dt


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
    """Same contract as `ssd_scan_ref`; ``chunk_size`` (T) sets the work split (64-128 is fastest on CPU)."""
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    T = chunk_size
    pad = (-l) % T
    dt = prepare_dt(dt, dt_bias, dt_softplus)
    # Padded steps have dt = 0: no decay and no input, so they change neither outputs nor the final state.
    xs = F.pad(up(x), (0, 0, 0, 0, 0, pad))
    dts = F.pad(dt, (0, 0, 0, pad))
    Bs = F.pad(up(B), (0, 0, 0, 0, 0, pad)).repeat_interleave(h // g, dim=2)
    Cs = F.pad(up(C), (0, 0, 0, 0, 0, pad)).repeat_interleave(h // g, dim=2)
    c = (l + pad) // T
    X = (xs * dts[..., None]).view(b, c, T, h, p)
    Bc, Cc = Bs.view(b, c, T, h, n), Cs.view(b, c, T, h, n)
    a = (dts * up(A)).view(b, c, T, h).permute(0, 3, 1, 2)  # (b, h, c, T)
    a_cum = torch.cumsum(a, dim=-1)

    # 1. within chunks: y_i = sum_{j <= i} (C_i . B_j) exp(a_{j+1} + ... + a_i) X_j
    decay_in = torch.exp(segsum(a))  # (b, h, c, T, T)
    scores = torch.einsum("bcihn,bcjhn->bhcij", Cc, Bc) * decay_in
    y = torch.einsum("bhcij,bcjhp->bcihp", scores, X)

    # 2. the state each chunk contributes by its end
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, h, c, T)
    chunk_states = torch.einsum("bcjhn,bhcj,bcjhp->bchpn", Bc, decay_to_end, X)

    # 3. recurrence over chunks: the state entering each chunk
    state = up(x).new_zeros(b, h, p, n) if initial_states is None else up(initial_states)
    chunk_decay = torch.exp(a_cum[..., -1])  # (b, h, c)
    entering = []
    for s_c, a_c in zip(chunk_states.unbind(1), chunk_decay.unbind(-1)):
        entering.append(state)
        state = a_c[..., None, None] * state + s_c
    prev = torch.stack(entering, dim=1)  # (b, c, h, p, n)

    # 4. the entering state's contribution inside each chunk
    y = y + torch.einsum("bcihn,bchpn,bhci->bcihp", Cc, prev, torch.exp(a_cum))
    y = y.reshape(b, c * T, h, p)[:, :l]
    out = finish(y, x, D, z).to(x.dtype)
    return (out, state) if return_final_states else out
