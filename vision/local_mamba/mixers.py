"""LocalMamba's multi-scan mixers (hunto/LocalMamba ``multi_mamba.py`` / ``local_vmamba.py``), on our kernels.

A layer scans its tokens in several 2D directions (`local_mamba.scans`); every direction has its own selective-scan
parameters (independent tensors, as in the released checkpoints), the outputs go back to token order, pass one
shared channel gate (`BiAttn`) and are summed, or, in the search supernet, LayerNorm'd and mixed with softmax
weights over all eight candidates (`MultiScan`).

- `MultiScanMamba` is LocalVim's mixer (upstream ``MultiMamba``): shared in/out projections; per direction
  ``conv1d_k``, ``x_proj_k``, ``dt_proj_k``, ``A_log_k``, ``D_k``; the gate z is scanned with x.
- `MultiScanSS2D` is LocalVMamba's mixer (upstream ``SS2D``, VMamba v0): a 3x3 depthwise conv before the scans,
  per-direction parameters stacked on a leading axis (``x_proj_weight`` (k, r+2n, d) ...), ``out_norm``, then
  the SiLU(z) gate. With ``directions=CROSS`` and no channel gate it is VMamba's v0 SS2D (VL-Mamba's VSS).

Both run every direction in one batched selective scan (directions stacked on the channel axis, B/C as one
group per direction). The per-direction loops of the released code are in `local_mamba_reference.py`; tests pin
the two together (outputs and gradients).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.norm import LayerNorm
from longseq.core.registry import Pretrained
from longseq.kernels import causal_conv1d, selective_scan
from longseq.vision.local_mamba.scans import ALL_DIRECTIONS, multi_scan, multi_unscan, parse_direction


def check_directions(directions: Sequence[str] | None) -> tuple[str, ...] | None:
    """Validate one layer's direction list (None = the search supernet over all eight)."""
    if directions is None:
        return None
    directions = tuple(directions)
    if not directions:
        raise ValueError("a layer needs at least one scan direction")
    for direction in directions:
        parse_direction(direction)
    if len(set(directions)) != len(directions):
        raise ValueError(f"repeated scan direction in {list(directions)}")
    return directions


def img_pair(img_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An ``img_size`` (a side, or (h, w) as timm's ViT takes it) as (h, w); ValueError for anything else."""
    if isinstance(img_size, int) and not isinstance(img_size, bool):
        return (img_size, img_size)
    if isinstance(img_size, (tuple, list)) and len(img_size) == 2 and all(isinstance(s, int) for s in img_size):
        return (int(img_size[0]), int(img_size[1]))
    raise ValueError(f"img_size must be an int or (h, w), got {img_size!r}")


def check_dropout(drop_rate: float, drop_path_rate: float) -> None:
    """Dropout and stochastic-depth rates are probabilities (NaN fails the comparison too)."""
    for name, rate in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {rate}")


def dt_bias_init(d: int, *, dt_min: float, dt_max: float, dt_init_floor: float, device=None) -> torch.Tensor:
    """softplus^-1 of time steps log-uniform in [dt_min, dt_max] (mamba_ssm's dt_proj.bias init)."""
    dt = torch.exp(torch.rand(d, device=device) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))


def a_log_init(d: int, n: int, *, device=None) -> torch.Tensor:
    """S4D-real: A = -(1..n) for every channel, stored as log(1..n), (d, n)."""
    return torch.log(torch.arange(1, n + 1, dtype=torch.float32, device=device)).repeat(d, 1)


def directional_ssm(
    u: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_proj_weight: torch.Tensor,
    dt_proj_bias: torch.Tensor,
    A_log: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None = None,
) -> torch.Tensor:
    """The selective scan of k directions at once, each with its own parameters.

    Args:
        u: (b, k, d, s) the scanned inputs. x_proj_weight: (k, r + 2n, d). dt_proj_weight: (k, d, r).
        dt_proj_bias: (k, d). A_log, D: (k*d, n), (k*d,) in direction-major order. z: (b, k, d, s) gate or None.

    Returns:
        y (b, k, d, s).
    """
    b, k, d, s = u.shape
    r, n = dt_proj_weight.shape[-1], A_log.shape[-1]
    x_dbl = torch.einsum("bkds,kcd->bkcs", u, x_proj_weight)
    dt, B, C = x_dbl.split([r, n, n], dim=2)
    delta = torch.einsum("bkrs,kdr->bkds", dt, dt_proj_weight)
    y = selective_scan(
        u.reshape(b, k * d, s),
        delta.reshape(b, k * d, s),
        -torch.exp(A_log.float()),
        B.contiguous(),
        C.contiguous(),
        D.float(),
        z=None if z is None else z.reshape(b, k * d, s),
        delta_bias=dt_proj_bias.reshape(-1).float(),
        delta_softplus=True,
    )
    return y.view(b, k, d, s)


class BiAttn(nn.Module):
    """The released "SCAttn": an SE-style channel gate, x * sigmoid(W2 gelu(W1 mean_l(LN(x)))).

    The paper also describes a spatial branch; in the released code (and checkpoints) it is commented out.
    """

    def __init__(self, dim: int, *, act_ratio: float = 0.125, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        reduced = int(dim * act_ratio)
        self.norm = LayerNorm(dim, **dd)
        self.global_reduce = nn.Linear(dim, reduced, **dd)
        self.channel_select = nn.Linear(reduced, dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., l, d) -> (..., l, d); the gate averages over l."""
        pooled = self.norm(x).mean(-2, keepdim=True)
        return x * torch.sigmoid(self.channel_select(F.gelu(self.global_reduce(pooled))))


class MultiScan(nn.Module):
    """Merge the directions of a layer: a plain sum, or the search supernet's softmax-weighted sum.

    Args:
        dim: channels of each direction's output.
        directions: this layer's directions; None = search over all eight, with learnable ``weights``
            (8, 1, 1, 1) (softmax over the first axis) and a LayerNorm without affine per branch.
        attn: hold the channel gate here and apply it before merging (LocalVMamba's ``multi_scan.attn``;
            LocalVim keeps its gate on the mixer).
    """

    def __init__(self, dim: int, directions: Sequence[str] | None, *, attn: bool = False, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        checked = check_directions(directions)
        self.search = checked is None
        self.directions: tuple[str, ...] = ALL_DIRECTIONS if checked is None else checked
        if self.search:
            self.weights = nn.Parameter(1e-3 * torch.randn(len(self.directions), 1, 1, 1, **dd))
            self.norms = nn.ModuleList(nn.LayerNorm(dim, elementwise_affine=False, **dd) for _ in self.directions)
        self.attn = BiAttn(dim, **dd) if attn else None

    def probabilities(self) -> torch.Tensor:
        """The supernet's softmax over the eight candidates, (8,)."""
        if not self.search:
            raise ValueError("only a search supernet layer has direction weights")
        return self.weights.detach().float().softmax(0).view(-1)

    def forward(self, ys: torch.Tensor) -> torch.Tensor:
        """ys: (b, k, l, d), every direction in token order -> (b, l, d)."""
        if self.attn is not None:
            ys = self.attn(ys)
        if not self.search:
            return ys.sum(1)
        weights = self.weights.softmax(0).view(1, -1, 1, 1)
        normed = torch.stack([norm(ys[:, i]) for i, norm in enumerate(self.norms)], dim=1)
        return (normed * weights).sum(1)

    def extra_repr(self) -> str:
        return f"directions={list(self.directions)}, search={self.search}"


def extract_directions(state: Mapping[str, torch.Tensor], topk: int = 4) -> list[list[str]]:
    """The search result: for each supernet layer, its top-k directions by softmax weight, listed in candidate
    order (hunto/LocalMamba ``tools/vis_search_prob.py``).

    Args:
        state: a supernet state dict (ours or official): the ``...multi_scan.weights`` (8, 1, 1, 1) entries are
            read in layer order.
    """
    keys = [k for k in state if k.endswith("multi_scan.weights")]
    if not keys:
        raise ValueError("no multi_scan.weights in the checkpoint: not a LocalMamba search supernet")
    if not 1 <= topk <= len(ALL_DIRECTIONS):
        raise ValueError(f"topk must be in 1..{len(ALL_DIRECTIONS)}; got {topk}")
    chosen = []
    for key in sorted(keys, key=lambda k: [int(n) for n in re.findall(r"\d+", k)]):
        probs = state[key].float().reshape(-1).softmax(0)
        if probs.numel() != len(ALL_DIRECTIONS):
            raise ValueError(f"{key} has {probs.numel()} weights; a supernet layer has {len(ALL_DIRECTIONS)}")
        chosen.append([ALL_DIRECTIONS[i] for i in sorted(probs.topk(topk).indices.tolist())])
    return chosen


class MultiScanMamba(nn.Module):
    """LocalVim's mixer: one Mamba block scanned in several 2D directions (upstream ``MultiMamba``).

    Args:
        d_model: token width.
        directions: this layer's scan directions, or None for the search supernet (all eight, weighted).
        d_state, d_conv, expand, dt_rank: as mamba_ssm's ``Mamba`` (dt_rank None = ceil(d_model / 16)).
    """

    def __init__(
        self,
        d_model: int,
        *,
        directions: Sequence[str] | None,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16) if dt_rank is None else dt_rank
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False, **dd)
        self.multi_scan = MultiScan(self.d_inner, directions, **dd)
        for k in range(len(self.directions)):
            self._add_direction(k, d_conv=d_conv, dt_min=dt_min, dt_max=dt_max, dt_init_floor=dt_init_floor, **dd)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False, **dd)
        self.attn = BiAttn(self.d_inner, **dd)

    def _add_direction(self, k: int, *, d_conv, dt_min, dt_max, dt_init_floor, device, dtype) -> None:
        """Direction k's own conv1d, x_proj, dt_proj, A_log and D (separate tensors, unlike upstream's A_log)."""
        dd = {"device": device, "dtype": dtype}
        d = self.d_inner
        # an nn.Conv1d for upstream's names and init; it runs through kernels.causal_conv1d (stacked over directions)
        setattr(self, f"conv1d_{k}", nn.Conv1d(d, d, d_conv, groups=d, padding=d_conv - 1, **dd))
        setattr(self, f"x_proj_{k}", nn.Linear(d, self.dt_rank + 2 * self.d_state, bias=False, **dd))
        dt_proj = nn.Linear(self.dt_rank, d, **dd)
        std = self.dt_rank**-0.5
        nn.init.uniform_(dt_proj.weight, -std, std)
        with torch.no_grad():
            dt_proj.bias.copy_(dt_bias_init(d, dt_min=dt_min, dt_max=dt_max, dt_init_floor=dt_init_floor))
        setattr(self, f"dt_proj_{k}", dt_proj)
        A_log = nn.Parameter(a_log_init(d, self.d_state, device=device))
        A_log._no_weight_decay = True
        setattr(self, f"A_log_{k}", A_log)
        D = nn.Parameter(torch.ones(d, device=device))
        D._no_weight_decay = True
        setattr(self, f"D_{k}", D)

    @property
    def directions(self) -> tuple[str, ...]:
        return self.multi_scan.directions

    def direction_params(self, k: int) -> dict[str, torch.Tensor]:
        """Direction k's parameters by their upstream names (without the ``_k`` suffix)."""
        conv = getattr(self, f"conv1d_{k}")
        dt_proj = getattr(self, f"dt_proj_{k}")
        return {
            "conv_weight": conv.weight[:, 0],
            "conv_bias": conv.bias,
            "x_proj_weight": getattr(self, f"x_proj_{k}").weight,
            "dt_proj_weight": dt_proj.weight,
            "dt_proj_bias": dt_proj.bias,
            "A_log": getattr(self, f"A_log_{k}"),
            "D": getattr(self, f"D_{k}"),
        }

    def _stacked(self) -> dict[str, torch.Tensor]:
        per = [self.direction_params(k) for k in range(len(self.directions))]
        return {name: torch.stack([p[name] for p in per]) for name in per[0]}

    def forward(self, x: torch.Tensor, grid: tuple[int, int], cls_position: int | None = None) -> torch.Tensor:
        """x: (b, l, d_model), the h*w patches in row-major order (plus a class token at ``cls_position``)."""
        b = x.shape[0]
        k, d = len(self.directions), self.d_inner
        p = self._stacked()
        seqs = multi_scan(self.in_proj(x), self.directions, grid, cls_position=cls_position)  # (b, k, s, 2d)
        s = seqs.shape[2]
        u, z = seqs.transpose(2, 3).chunk(2, dim=2)  # (b, k, d, s) each
        u = causal_conv1d(
            u.reshape(b, k * d, s), p["conv_weight"].reshape(k * d, -1), p["conv_bias"].reshape(-1), activation="silu"
        )
        y = directional_ssm(
            u.view(b, k, d, s),
            p["x_proj_weight"],
            p["dt_proj_weight"],
            p["dt_proj_bias"],
            p["A_log"].reshape(k * d, -1),
            p["D"].reshape(-1),
            z=z,
        )
        y = multi_unscan(y.transpose(2, 3), self.directions, grid, cls_position=cls_position)  # (b, k, l, d)
        return self.out_proj(self.multi_scan(self.attn(y)))


class MultiScanSS2D(nn.Module):
    """LocalVMamba's mixer (upstream ``SS2D`` with ``MultiScanVSSM``), on (b, h, w, c) feature maps.

    in_proj -> (x, z); x: depthwise conv 3x3 -> SiLU -> scans -> per-direction selective scan -> back to the
    grid -> channel gate -> merge -> out_norm; times SiLU(z) -> out_proj. Per-direction parameters are stacked
    on a leading axis as in the released checkpoints.

    Args:
        d_model: channels.
        directions: scan directions, or None for the search supernet.
        d_state, ssm_ratio, dt_rank, d_conv: VMamba's names (dt_rank None = ceil(d_model / 16)).
        attn: the LocalMamba channel gate (False gives VMamba's plain sum, as in VL-Mamba's VSS).
    """

    def __init__(
        self,
        d_model: int,
        *,
        directions: Sequence[str] | None,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | None = None,
        d_conv: int = 3,
        attn: bool = True,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        d = self.d_inner = int(ssm_ratio * d_model)
        self.d_state = d_state
        self.dt_rank = r = math.ceil(d_model / 16) if dt_rank is None else dt_rank
        self.in_proj = nn.Linear(d_model, 2 * d, bias=False, **dd)
        self.conv2d = nn.Conv2d(d, d, d_conv, groups=d, padding=(d_conv - 1) // 2, **dd)
        self.multi_scan = MultiScan(d, directions, attn=attn, **dd)
        k = len(self.multi_scan.directions)
        self.x_proj_weight = nn.Parameter(torch.empty(k, r + 2 * d_state, d, **dd))
        bound = d**-0.5  # nn.Linear's default init, as upstream's stacked Linear weights
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d, r, **dd).uniform_(-(r**-0.5), r**-0.5))
        bias = torch.stack(
            [dt_bias_init(d, dt_min=dt_min, dt_max=dt_max, dt_init_floor=dt_init_floor) for _ in range(k)]
        )
        self.dt_projs_bias = nn.Parameter(bias.to(device=device, dtype=dtype))
        self.A_logs = nn.Parameter(a_log_init(k * d, d_state, device=device))
        self.A_logs._no_weight_decay = True
        self.Ds = nn.Parameter(torch.ones(k * d, device=device))
        self.Ds._no_weight_decay = True
        self.out_norm = LayerNorm(d, **dd)
        self.out_proj = nn.Linear(d, d_model, bias=False, **dd)

    @property
    def directions(self) -> tuple[str, ...]:
        return self.multi_scan.directions

    def scan_mix(self, x: torch.Tensor) -> torch.Tensor:
        """The SSM part: x (b, d_inner, h, w) after conv + SiLU -> merged (b, h, w, d_inner) before out_norm."""
        b, d, h, w = x.shape
        seqs = multi_scan(x.flatten(2).transpose(1, 2), self.directions, (h, w))  # (b, k, s, d)
        y = directional_ssm(
            seqs.transpose(2, 3), self.x_proj_weight, self.dt_projs_weight, self.dt_projs_bias, self.A_logs, self.Ds
        )
        y = multi_unscan(y.transpose(2, 3), self.directions, (h, w))  # (b, k, h*w, d)
        return self.multi_scan(y).view(b, h, w, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, h, w, d_model) -> (b, h, w, d_model)."""
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
        return self.out_proj(self.out_norm(self.scan_mix(x)) * F.silu(z))


class LocalMambaCheckpoints(Pretrained):
    """The checkpoint API LocalVim and LocalVMamba share (a mixin): ``config`` / ``model_type`` come from the class."""

    @classmethod
    def from_config(cls, config, *, device=None, dtype=None):
        return cls(**dataclasses.asdict(config), device=device, dtype=dtype)

    def load_pretrained(self, checkpoint_path: str | os.PathLike) -> None:
        """timm's ``custom_load`` hook: an official LocalMamba file through `convert.load_release_file`."""
        from longseq.vision.local_mamba.convert import load_release_file

        load_release_file(self, checkpoint_path)
