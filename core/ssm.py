"""Selective state-space mixers: Mamba (Mamba-1) and Mamba2, with mamba_ssm's parameter names and shapes.

Both follow the mixer protocol of `core.block`: ``forward(x, state=None)`` runs the parallel scan (continuing
from a state when given one), ``init_state`` allocates a decode state and ``step`` advances it by one token
through the kernels' decode ops. States carry values, not gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.norm import GatedRMSNorm
from longseq.kernels import (
    _backend,
    causal_conv1d,
    causal_conv1d_update,
    selective_scan,
    selective_state_update,
    ssd_scan,
)
from longseq.kernels.causal_conv1d.torch_conv import causal_conv1d_channels_last


def _inverse_softplus_dt(
    size: int, *, dt_min: float, dt_max: float, dt_init_floor: float, device=None, dtype=None
) -> torch.Tensor:
    """The dt bias init of mamba_ssm: dt log-uniform in [dt_min, dt_max] (floored), stored as softplus^-1(dt)."""
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"need 0 < dt_min <= dt_max; got {dt_min}, {dt_max}")
    log_min, log_max = math.log(dt_min), math.log(dt_max)
    dt = torch.exp(torch.rand(size, device=device, dtype=dtype) * (log_max - log_min) + log_min)
    dt = dt.clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))


def _fresh(t: torch.Tensor) -> torch.Tensor:
    """A detached copy for a state: later in-place decode steps must not touch tensors saved for backward."""
    return t.detach().clone(memory_format=torch.contiguous_format)


@dataclass
class MambaState:
    """Decode state of one `Mamba` layer.

    conv: (b, d_inner, d_conv - 1), the last inputs of the short conv, in the activation dtype.
    ssm: (b, d_inner, d_state), the SSM state, float32.
    """

    conv: torch.Tensor
    ssm: torch.Tensor


class Mamba(nn.Module):
    """The Mamba-1 mixer (mamba_ssm ``Mamba``): in_proj -> causal conv + silu -> selective scan -> gate -> out_proj.

    Args:
        d_model: input and output width d.
        d_state: SSM state size n.
        d_conv: short causal conv width.
        expand: d_inner = expand * d_model.
        dt_rank: rank of the dt projection; "auto" = ceil(d_model / 16).
        dt_min, dt_max, dt_init, dt_scale, dt_init_floor: the dt_proj initialisation (as upstream).
        conv_bias: bias on the short conv. bias: bias on in_proj and out_proj.
    """

    def __init__(
        self,
        d_model: int,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant'; got {dt_init!r}")
        if dt_rank != "auto" and not (isinstance(dt_rank, int) and dt_rank > 0):
            raise ValueError(f"dt_rank must be a positive int or 'auto'; got {dt_rank!r}")
        dd = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **dd)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias, **dd
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **dd)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **dd)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **dd)

        std = self.dt_rank**-0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "constant":
                self.dt_proj.weight.fill_(std)
            else:
                self.dt_proj.weight.uniform_(-std, std)
            self.dt_proj.bias.copy_(
                _inverse_softplus_dt(self.d_inner, dt_min=dt_min, dt_max=dt_max, dt_init_floor=dt_init_floor, **dd)
            )
        self.dt_proj.bias._no_reinit = True  # the LM's init leaves this bias alone (mamba_ssm convention)

        # S4D-real init A = -(1..n) per channel; A_log and D stay float32 whatever the model dtype (as upstream).
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True

    def _conv_weight(self) -> torch.Tensor:
        return self.conv1d.weight.squeeze(1)  # (d_inner, 1, w) -> (d_inner, w)

    def _split_x_proj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (..., d_inner) -> dt (..., d_inner) without its bias, B and C (..., n)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C

    def forward(self, x: torch.Tensor, state: MambaState | None = None) -> torch.Tensor:
        """x: (b, l, d) -> (b, l, d). With a state: continue from it and leave the state after x in it."""
        return self.out_proj(self.mix(self.in_proj(x), state))

    def mix(self, xz: torch.Tensor, state: MambaState | None = None) -> torch.Tensor:
        """in_proj's output xz (b, l, 2 d_inner) -> the gated scan output (b, l, d_inner) that out_proj maps back:
        `forward` between its two projections (Caduceus's BiMamba shares them between two mixers)."""
        if state is None and _backend.choose(xz, None) == "torch":
            return self._mix_torch(xz)
        u, z = xz.transpose(1, 2).chunk(2, dim=1)  # (b, d_inner, l) each
        conv = causal_conv1d(
            u,
            self._conv_weight(),
            self.conv1d.bias,
            initial_states=None if state is None else state.conv.to(u.dtype),
            return_final_states=state is not None,
            activation="silu",
        )
        u, conv_last = conv if state is not None else (conv, None)
        dt, B, C = self._split_x_proj(u.transpose(1, 2))
        A = -torch.exp(self.A_log.float())
        scan = selective_scan(
            u,
            dt.transpose(1, 2),
            A,
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            return_last_state=state is not None,
            initial_state=None if state is None else state.ssm,
        )
        if state is not None:
            scan, ssm_last = scan
            state.conv, state.ssm = _fresh(conv_last).to(state.conv.dtype), _fresh(ssm_last)
        return scan.transpose(1, 2)

    def _mix_torch(self, xz: torch.Tensor) -> torch.Tensor:
        """`mix` without a state, arranged for the CPU (the torch backend); tests/core/test_ssm.py pins the two.

        The short conv runs in the (b, l, d_inner) layout in_proj produces (`causal_conv1d_channels_last`), so u
        reaches x_proj and the scan time-major with no transposed copy, and the scan's output is time-major too.
        """
        u, z = xz.chunk(2, dim=-1)  # (b, l, d_inner) each
        u = causal_conv1d_channels_last(u, self._conv_weight(), self.conv1d.bias, activation="silu")
        dt, B, C = self._split_x_proj(u)
        y = selective_scan(
            u.transpose(1, 2),
            dt.transpose(1, 2),
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D.float(),
            z=z.transpose(1, 2),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )
        return y.transpose(1, 2)

    def init_state(self, batch_size: int, *, max_seqlen: int | None = None, device=None, dtype=None) -> MambaState:
        """Zero state for a fresh sequence; ``max_seqlen`` is not needed (the state has a fixed size)."""
        device = self.in_proj.weight.device if device is None else device
        dtype = self.in_proj.weight.dtype if dtype is None else dtype
        return MambaState(
            conv=torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device, dtype=dtype),
            ssm=torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=torch.float32),
        )

    def step(self, x: torch.Tensor, state: MambaState) -> torch.Tensor:
        """One token: x (b, d) -> (b, d); the state advances in place."""
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (b, d_inner) each
        u = causal_conv1d_update(u, state.conv, self._conv_weight(), self.conv1d.bias, activation="silu")
        dt, B, C = self._split_x_proj(u)
        A = -torch.exp(self.A_log.float())
        y = selective_state_update(
            state.ssm, u, dt, A, B, C, self.D.float(), z=z, dt_bias=self.dt_proj.bias.float(), dt_softplus=True
        )
        return self.out_proj(y)


@dataclass
class Mamba2State:
    """Decode state of one `Mamba2` layer.

    conv: (b, d_inner + 2 * ngroups * d_state, d_conv - 1), the last inputs of the conv over xBC.
    ssm: (b, nheads, headdim, d_state), float32.
    """

    conv: torch.Tensor
    ssm: torch.Tensor


class Mamba2(nn.Module):
    """The Mamba-2 mixer (mamba_ssm ``Mamba2``): in_proj -> [z, xBC, dt]; causal conv + silu over xBC ->
    SSD scan over heads -> gated RMSNorm(y, z) -> out_proj.

    Args:
        d_model: input and output width d.
        d_state: SSM state size n per group.
        d_conv: short causal conv width.
        expand: d_inner = expand * d_model; nheads = d_inner / headdim.
        headdim: channels per head p.
        ngroups: groups of B and C shared by nheads / ngroups heads each.
        A_init_range: A = -U(A_init_range) per head.
        D_has_hdim: D per channel (d_inner) instead of per head.
        dt_min, dt_max, dt_init_floor: the dt_bias initialisation (as upstream).
        chunk_size: SSD chunk length (does not change results).
        conv_bias: bias on the short conv. bias: bias on in_proj and out_proj.
        norm_eps: eps of the gated RMSNorm.
    """

    def __init__(
        self,
        d_model: int,
        *,
        d_state: int = 128,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        D_has_hdim: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        chunk_size: int = 256,
        conv_bias: bool = True,
        bias: bool = False,
        norm_eps: float = 1e-5,
        device=None,
        dtype=None,
    ):
        super().__init__()
        d_inner = expand * d_model
        if d_inner % headdim != 0:
            raise ValueError(f"d_inner = {d_inner} is not a multiple of headdim {headdim}")
        nheads = d_inner // headdim
        if nheads % ngroups != 0:
            raise ValueError(f"ngroups {ngroups} does not divide nheads {nheads}")
        if not 0 < A_init_range[0] <= A_init_range[1]:
            raise ValueError(f"A_init_range must satisfy 0 < low <= high; got {A_init_range}")
        dd = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = d_inner
        self.headdim = headdim
        self.nheads = nheads
        self.ngroups = ngroups
        self.chunk_size = chunk_size
        self.conv_dim = d_inner + 2 * ngroups * d_state

        # in_proj output order: [z, x, B, C, dt]
        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * ngroups * d_state + nheads, bias=bias, **dd)
        self.conv1d = nn.Conv1d(
            self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, padding=d_conv - 1, bias=conv_bias, **dd
        )
        self.dt_bias = nn.Parameter(
            _inverse_softplus_dt(nheads, dt_min=dt_min, dt_max=dt_max, dt_init_floor=dt_init_floor, **dd)
        )
        self.dt_bias._no_weight_decay = True
        A = torch.empty(nheads, dtype=torch.float32, device=device).uniform_(*A_init_range)
        self.A_log = nn.Parameter(torch.log(A).to(dtype=dtype))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(d_inner if D_has_hdim else nheads, device=device))
        self.D._no_weight_decay = True
        self.norm = GatedRMSNorm(d_inner, eps=norm_eps, group_size=d_inner // ngroups, norm_before_gate=False, **dd)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias, **dd)

    def _conv_weight(self) -> torch.Tensor:
        return self.conv1d.weight.squeeze(1)  # (conv_dim, 1, w) -> (conv_dim, w)

    def _split_xBC(self, xBC: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """xBC (..., conv_dim) -> x (..., h, p), B and C (..., g, n)."""
        gn = self.ngroups * self.d_state
        x, B, C = xBC.split([self.d_inner, gn, gn], dim=-1)
        return (
            x.unflatten(-1, (self.nheads, self.headdim)),
            B.unflatten(-1, (self.ngroups, self.d_state)),
            C.unflatten(-1, (self.ngroups, self.d_state)),
        )

    def _D(self) -> torch.Tensor:
        D = self.D.float()
        return D.view(self.nheads, self.headdim) if D.shape[0] == self.d_inner else D

    def forward(self, x: torch.Tensor, state: Mamba2State | None = None) -> torch.Tensor:
        """x: (b, l, d) -> (b, l, d). With a state: continue from it and leave the state after x in it."""
        z, xBC, dt = self.in_proj(x).split([self.d_inner, self.conv_dim, self.nheads], dim=-1)
        conv = causal_conv1d(
            xBC.transpose(1, 2),
            self._conv_weight(),
            self.conv1d.bias,
            initial_states=None if state is None else state.conv.to(xBC.dtype),
            return_final_states=state is not None,
            activation="silu",
        )
        xBC, conv_last = conv if state is not None else (conv, None)
        xs, B, C = self._split_xBC(xBC.transpose(1, 2))
        A = -torch.exp(self.A_log.float())
        scan = ssd_scan(
            xs,
            dt,
            A,
            B,
            C,
            self.chunk_size,
            D=self._D(),
            dt_bias=self.dt_bias,
            dt_softplus=True,
            initial_states=None if state is None else state.ssm,
            return_final_states=state is not None,
        )
        if state is not None:
            scan, ssm_last = scan
            state.conv, state.ssm = _fresh(conv_last).to(state.conv.dtype), _fresh(ssm_last)
        y = self.norm(scan.flatten(-2), z)
        return self.out_proj(y)

    def init_state(self, batch_size: int, *, max_seqlen: int | None = None, device=None, dtype=None) -> Mamba2State:
        """Zero state for a fresh sequence; ``max_seqlen`` is not needed (the state has a fixed size)."""
        device = self.in_proj.weight.device if device is None else device
        dtype = self.in_proj.weight.dtype if dtype is None else dtype
        return Mamba2State(
            conv=torch.zeros(batch_size, self.conv_dim, self.d_conv - 1, device=device, dtype=dtype),
            ssm=torch.zeros(batch_size, self.nheads, self.headdim, self.d_state, device=device, dtype=torch.float32),
        )

    def step(self, x: torch.Tensor, state: Mamba2State) -> torch.Tensor:
        """One token: x (b, d) -> (b, d); the state advances in place."""
        b = x.shape[0]
        h, p, n = self.nheads, self.headdim, self.d_state
        z, xBC, dt = self.in_proj(x).split([self.d_inner, self.conv_dim, self.nheads], dim=-1)
        xBC = causal_conv1d_update(xBC, state.conv, self._conv_weight(), self.conv1d.bias, activation="silu")
        xs, B, C = self._split_xBC(xBC)
        # The headed step is the channel step with every head's scalar A, dt and D repeated over its p channels;
        # the state (b, h, p, n) is viewed as (b, h * p, n), so the kernel updates it in place.
        A = (-torch.exp(self.A_log.float())).repeat_interleave(p).unsqueeze(-1).expand(h * p, n)
        D = self._D()
        D = D.flatten() if D.dim() == 2 else D.repeat_interleave(p)
        y = selective_state_update(
            state.ssm.view(b, h * p, n),
            xs.flatten(-2),
            dt.repeat_interleave(p, dim=-1),
            A,
            B,
            C,
            D,
            dt_bias=self.dt_bias.float().repeat_interleave(p),
            dt_softplus=True,
        )
        return self.out_proj(self.norm(y, z))
