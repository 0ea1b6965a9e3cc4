"""LocalVMamba (hunto/LocalMamba ``local_vmamba.py``: VMamba v0 with LocalMamba's scans), timm style.

conv 4x4/4 + LayerNorm -> 4 stages of [blocks: x + drop_path(`MultiScanSS2D`(LN(x))), no MLP] with
PatchMerging2D (zero-pad odd sizes, 2x2 -> 4C, LN, Linear 4C -> 2C) between stages -> LN -> average pool -> fc.
Feature maps are channels-last (b, h, w, c), as upstream.

Parameter names follow the released checkpoints (``layers.{s}.blocks.{j}.op.x_proj_weight`` ...) except the stem
and head, which take timm's names (``patch_embed.proj`` / ``.norm``, ``head.norm`` / ``head.fc``); `local_mamba.convert`
maps ``patch_embed.0/2`` and ``classifier.norm/head`` to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath, trunc_normal_
from timm.models._features import feature_take_indices
from torch import nn

from longseq.core.io import InputError
from longseq.core.norm import LayerNorm
from longseq.vision.local_mamba.mixers import (
    LocalMambaCheckpoints,
    MultiScanSS2D,
    check_directions,
    check_dropout,
    img_pair,
)


@dataclass(kw_only=True)
class LocalVMambaConfig:
    """LocalVMamba hyper-parameters (the constructor arguments of `LocalVMamba`)."""

    # input and head
    img_size: int | tuple[int, int] = 224
    """The training size (a side, or (h, w)): timm's input_size; the weights take any size (no position table)."""
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 1000
    global_pool: Literal["avg", ""] = "avg"
    # trunk
    dims: list[int] = field(default_factory=lambda: [96, 192, 384, 768])
    depths: list[int] = field(default_factory=lambda: [2, 2, 9, 2])
    directions: list[list[str]] | None = None  # one list per block over all stages; None: the search supernet
    d_state: int = 16
    ssm_ratio: float = 2.0
    dt_rank: int | None = None
    d_conv: int = 3
    norm_eps: float = 1e-5
    # regularisation
    drop_rate: float = 0.0
    drop_path_rate: float = 0.2

    def __post_init__(self):
        if not isinstance(self.img_size, int):
            self.img_size = img_pair(self.img_size)  # a JSON list back to (h, w)
        if min(img_pair(self.img_size)) < self.patch_size:
            raise ValueError(f"img_size {self.img_size} is smaller than patch_size {self.patch_size}")
        if len(self.dims) != len(self.depths) or not self.dims:
            raise ValueError(f"dims {self.dims} and depths {self.depths} must be non-empty and of equal length")
        if min(self.dims) < 1 or min(self.depths) < 1:
            raise ValueError(f"dims and depths must be >= 1, got {self.dims} and {self.depths}")
        for name in ("patch_size", "in_chans", "d_state"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.num_classes <= 2**20:  # a head for more classes would not fit in memory anyway
            raise ValueError(f"num_classes must lie in [0, {2**20}] (0: no head), got {self.num_classes}")
        if self.d_conv < 1 or self.d_conv % 2 == 0:
            raise ValueError(f"d_conv must be odd (a 'same' depthwise conv), got {self.d_conv}")
        if self.dt_rank is not None and self.dt_rank < 1:
            raise ValueError(f"dt_rank must be >= 1 or None, got {self.dt_rank}")
        if not self.ssm_ratio > 0 or not self.norm_eps > 0:
            raise ValueError(f"ssm_ratio and norm_eps must be > 0, got {self.ssm_ratio}, {self.norm_eps}")
        check_dropout(self.drop_rate, self.drop_path_rate)
        if self.directions is not None:
            if len(self.directions) != sum(self.depths):
                raise ValueError(f"directions has {len(self.directions)} blocks; depths add up to {sum(self.depths)}")
            self.directions = [list(check_directions(d)) for d in self.directions]

    @property
    def search(self) -> bool:
        return self.directions is None


class PatchMerging2D(nn.Module):
    """(b, h, w, c) -> (b, ceil(h/2), ceil(w/2), out): zero-pad odd sizes, gather 2x2, LN, Linear (no bias)."""

    def __init__(self, dim: int, out_dim: int, *, norm_eps: float, device=None, dtype=None):
        super().__init__()
        self.norm = LayerNorm(4 * dim, eps=norm_eps, device=device, dtype=dtype)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # order as released: (even row, even col), (odd, even), (even, odd), (odd, odd)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class VSSBlock(nn.Module):
    """x + drop_path(op(LN(x))) on (b, h, w, c)."""

    def __init__(self, dim: int, op: MultiScanSS2D, *, norm_eps: float, drop_path: float, device=None, dtype=None):
        super().__init__()
        self.norm = LayerNorm(dim, eps=norm_eps, device=device, dtype=dtype)
        self.op = op
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.op(self.norm(x)))


class Stem(nn.Module):
    """Conv patch embedding + LayerNorm: (b, c, H, W) -> (b, H/p, W/p, d)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, *, norm_eps: float, device=None, dtype=None):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size, device=device, dtype=dtype)
        self.norm = LayerNorm(dim, eps=norm_eps, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class Head(nn.Module):
    """LN per position -> average pool -> dropout -> fc (the released ``classifier``, timm names)."""

    def __init__(self, dim: int, num_classes: int, *, pool: str, drop_rate: float, norm_eps: float, device=None):
        super().__init__()
        self.pool = pool
        self.norm = LayerNorm(dim, eps=norm_eps, device=device)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(dim, num_classes, device=device) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """x: (b, h, w, c) -> (b, num_classes), or (b, h, w, ...) without pooling."""
        x = self.norm(x)
        if self.pool == "avg":
            x = x.mean(dim=(1, 2))
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


class LocalVMamba(LocalMambaCheckpoints, nn.Module):
    """LocalVMamba image classifier and hierarchical backbone; the arguments are `LocalVMambaConfig`'s fields."""

    model_type = "local_vmamba"

    output_fmt = "NHWC"

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: Literal["avg", ""] = "avg",
        dims: list[int] | tuple[int, ...] = (96, 192, 384, 768),
        depths: list[int] | tuple[int, ...] = (2, 2, 9, 2),
        directions: list[list[str]] | None = None,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | None = None,
        d_conv: int = 3,
        norm_eps: float = 1e-5,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        device=None,
        dtype=None,
    ):
        super().__init__()
        cfg = self.config = LocalVMambaConfig(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=num_classes,
            global_pool=global_pool,
            dims=list(dims),
            depths=list(depths),
            directions=directions,
            d_state=d_state,
            ssm_ratio=ssm_ratio,
            dt_rank=dt_rank,
            d_conv=d_conv,
            norm_eps=norm_eps,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
        )
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = cfg.dims[-1]
        self.patch_embed = Stem(in_chans, cfg.dims[0], patch_size, norm_eps=norm_eps, **dd)
        n = sum(cfg.depths)
        rates = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]  # linearly increasing, as upstream
        block_directions = cfg.directions or [None] * sum(cfg.depths)
        self.layers = nn.ModuleList()
        self.feature_info = []
        first = 0
        for s, (dim, depth) in enumerate(zip(cfg.dims, cfg.depths)):
            blocks = [
                VSSBlock(
                    dim,
                    MultiScanSS2D(
                        dim,
                        directions=block_directions[first + j],
                        d_state=d_state,
                        ssm_ratio=ssm_ratio,
                        dt_rank=dt_rank,
                        d_conv=d_conv,
                        **dd,
                    ),
                    norm_eps=norm_eps,
                    drop_path=rates[first + j],
                    **dd,
                )
                for j in range(depth)
            ]
            first += depth
            last = s == len(cfg.dims) - 1
            stage = nn.Module()
            stage.blocks = nn.Sequential(*blocks)
            stage.downsample = nn.Identity() if last else PatchMerging2D(dim, cfg.dims[s + 1], norm_eps=norm_eps, **dd)
            self.layers.append(stage)
            self.feature_info.append({"num_chs": dim, "reduction": patch_size * 2**s, "module": f"layers.{s}"})
        self.head = Head(
            cfg.dims[-1], num_classes, pool=global_pool, drop_rate=drop_rate, norm_eps=norm_eps, device=device
        )
        self.grad_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        """Upstream's init: trunc-normal(0.02) Linears with zero biases (the stacked SSM tensors keep theirs)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    # --- timm model API ---

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        blocks = r"^layers\.(\d+)" if coarse else [(r"^layers\.(\d+)\.blocks\.(\d+)", None), (r"^layers\.(\d+)", (0,))]
        return {"stem": r"^patch_embed", "blocks": blocks}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool must be 'avg' or ''; got {global_pool!r}")
            self.head.pool = global_pool
        self.num_classes = num_classes
        device = self.patch_embed.proj.weight.device
        self.head.fc = nn.Linear(self.num_features, num_classes, device=device) if num_classes > 0 else nn.Identity()

    # --- forward ---

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        p = self.config.patch_size
        if x.dim() != 4:
            raise InputError(f"expected images (batch, channels, height, width); got shape {tuple(x.shape)}")
        if x.shape[1] != self.config.in_chans:
            raise InputError(f"the model takes {self.config.in_chans}-channel images; got {x.shape[1]} channels")
        if x.shape[2] < p or x.shape[3] < p:
            raise InputError(f"image {x.shape[2]}x{x.shape[3]} is smaller than one {p}x{p} patch")
        return self.patch_embed(x)

    def _blocks(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        for block in stage.blocks:
            if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (b, c, H, W) -> the last stage's map (b, h, w, c), before the head's norm."""
        x = self._stem(x)
        for stage in self.layers:
            x = stage.downsample(self._blocks(stage, x))
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """Each chosen stage's output before its downsample, (b, c, h, w) (NCHW) or (b, h, w, c) (NHWC).

        ``norm`` applies the head's LayerNorm to the last stage's map (the only one it fits).
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC'; got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.layers), indices)
        stages = self.layers[: max_index + 1] if stop_early else self.layers
        x = self._stem(x)
        intermediates = []
        for s, stage in enumerate(stages):
            y = self._blocks(stage, x)
            if s in take:
                out = self.head.norm(y) if norm and s == len(self.layers) - 1 else y
                intermediates.append(out.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else out)
            x = stage.downsample(y)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ):
        """Drop the stages after the last one ``indices`` needs; the kept last stage loses its downsample."""
        take, max_index = feature_take_indices(len(self.layers), indices)
        if max_index < len(self.layers) - 1:
            self.layers = self.layers[: max_index + 1]
            self.layers[-1].downsample = nn.Identity()
            self.feature_info = self.feature_info[: max_index + 1]
            self.num_features = self.head_hidden_size = self.feature_info[-1]["num_chs"]
            prune_norm = prune_head = True
        if prune_norm:
            self.head.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take
