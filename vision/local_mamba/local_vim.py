"""LocalVim (hunto/LocalMamba ``local_vim.py``): a plain ViT-like stack of multi-scan Mamba blocks, timm style.

patch embed (16x16, zero-padded to whole patches) -> [+ middle class token] -> + absolute position embedding ->
depth x (add -> RMSNorm -> `MultiScanMamba`, residual stream in float32; RoPE on the hidden states and the
residual before every block in the RoPE recipe) -> add -> RMSNorm -> class token or mean pool -> head.

Module and parameter names are those of the released checkpoints (``layers.{i}.mixer.conv1d_{k}`` ...), so
`local_mamba.convert` maps them one to one and checks every tensor. Inputs of any size work: the position embedding
(and RoPE table) is resized bicubically to the patch grid, as upstream does for detection inputs; non-square
grids scan correctly (`vision.local_mamba.scans`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath, PatchEmbed, trunc_normal_
from timm.models._features import feature_take_indices
from torch import nn

from longseq.core.io import InputError
from longseq.core.norm import RMSNorm, add_norm
from longseq.vision.local_mamba.mixers import (
    LocalMambaCheckpoints,
    MultiScanMamba,
    check_directions,
    check_dropout,
    img_pair,
)


@dataclass(kw_only=True)
class LocalVimConfig:
    """LocalVim hyper-parameters (the constructor arguments of `LocalVim`)."""

    # input and head
    img_size: int | tuple[int, int] = 224
    """The training size: a side, or (h, w); other sizes run too (position tables resized to the patch grid)."""
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    global_pool: Literal["token", "avg", ""] | None = None  # None: "token" with a class token, else "avg"
    # trunk
    embed_dim: int = 192
    depth: int = 20
    directions: list[list[str]] | None = None  # one list per layer; None: the search supernet (all eight)
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None
    norm_eps: float = 1e-5
    # tokens and positions
    cls_token: Literal["none", "middle"] = "none"
    abs_pos_embed: bool = True
    rope: bool = True
    rope_pt_seq_len: int = 14
    # regularisation
    drop_rate: float = 0.0
    drop_path_rate: float = 0.1

    def __post_init__(self):
        if not isinstance(self.img_size, int):
            self.img_size = img_pair(self.img_size)  # a JSON list back to (h, w)
        height, width = img_pair(self.img_size)
        if min(height, width) < 1:
            raise ValueError(f"img_size must be >= 1, got {self.img_size}")
        for name in ("patch_size", "in_chans", "embed_dim", "depth", "d_state", "d_conv", "expand"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.num_classes <= 2**20:  # a head for more classes would not fit in memory anyway
            raise ValueError(f"num_classes must lie in [0, {2**20}] (0: no head), got {self.num_classes}")
        if self.dt_rank is not None and self.dt_rank < 1:
            raise ValueError(f"dt_rank must be >= 1 or None, got {self.dt_rank}")
        if not self.norm_eps > 0 or self.rope_pt_seq_len < 1:
            raise ValueError(
                f"norm_eps must be > 0 and rope_pt_seq_len >= 1, got {self.norm_eps}, {self.rope_pt_seq_len}"
            )
        check_dropout(self.drop_rate, self.drop_path_rate)
        if min(height, width) < self.patch_size:
            raise ValueError(f"img_size {self.img_size} is smaller than patch_size {self.patch_size}")
        if (height // self.patch_size) * (width // self.patch_size) > 2**20:  # the position table: a row per patch
            raise ValueError(f"img_size {self.img_size} makes over {2**20} patches of {self.patch_size} pixels")
        if self.directions is not None:
            if len(self.directions) != self.depth:
                raise ValueError(f"directions has {len(self.directions)} layers; depth is {self.depth}")
            self.directions = [list(check_directions(d)) for d in self.directions]
        if self.rope and self.cls_token != "none":
            raise ValueError("RoPE with a class token is not a released recipe (upstream RoPE skips no token)")
        if self.embed_dim % 4:
            raise ValueError(f"embed_dim must be a multiple of 4 (RoPE pairs); got {self.embed_dim}")
        if self.global_pool == "token" and self.cls_token == "none":
            raise ValueError("global_pool 'token' needs a class token")

    @property
    def search(self) -> bool:
        return self.directions is None


def resize_grid(table: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a per-patch table (..., old_h*old_w, d) -> (..., new_h*new_w, d), as upstream
    (mmseg ``resize``: align_corners=False, no antialias)."""
    if tuple(old) == tuple(new):
        return table
    lead, d = table.shape[:-2], table.shape[-1]
    grid = table.reshape(1, old[0], old[1], d).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=new, mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(*lead, new[0] * new[1], d).to(table.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Interleaved pairs (x0, x1) -> (-x1, x0), EVA-02 / Vim's RoPE convention."""
    x = x.unflatten(-1, (-1, 2))
    return torch.stack((-x[..., 1], x[..., 0]), dim=-1).flatten(-2)


class VisionRope(nn.Module):
    """2D rotary embedding over the patch grid (Vim's ``VisionRotaryEmbeddingFast``): the first half of the
    channels rotates with the row, the second half with the column. The tables are persistent buffers
    (``rope.freqs_cos`` / ``rope.freqs_sin`` (h*w, d) are in the released checkpoints)."""

    def __init__(self, dim: int, grid: tuple[int, int], *, pt_seq_len: int = 14, theta: float = 10000.0, device=None):
        super().__init__()
        half = dim // 2
        freqs = 1.0 / theta ** (torch.arange(0, half, 2, device=device)[: half // 2].float() / half)

        def axis(n: int) -> torch.Tensor:  # (n, half): positions stretched to the pre-training length
            t = torch.arange(n, device=device) / n * pt_seq_len
            return torch.outer(t, freqs).repeat_interleave(2, dim=-1)

        rows, cols = axis(grid[0]), axis(grid[1])
        table = torch.cat(
            [rows[:, None].expand(-1, grid[1], -1), cols[None, :].expand(grid[0], -1, -1)], dim=-1
        ).reshape(grid[0] * grid[1], dim)
        self.grid = grid
        self.register_buffer("freqs_cos", table.cos())
        self.register_buffer("freqs_sin", table.sin())

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """x: (b, h*w, d) -> rotated; tables resized bicubically when the grid is not the training grid."""
        cos = resize_grid(self.freqs_cos, self.grid, grid)
        sin = resize_grid(self.freqs_sin, self.grid, grid)
        return x * cos + rotate_half(x) * sin


class LocalVimBlock(nn.Module):
    """Add -> RMSNorm -> mixer with the residual stream kept apart in float32 (mamba_ssm's fused add-norm);
    ``drop_path`` drops the incoming branch output, as upstream's ``Block``."""

    def __init__(self, dim: int, mixer: MultiScanMamba, *, norm_eps: float, drop_path: float, device=None, dtype=None):
        super().__init__()
        self.mixer = mixer
        self.norm = RMSNorm(dim, eps=norm_eps, device=device, dtype=dtype)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None, grid: tuple[int, int], cls_position: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x, residual: (b, l, d) -> (mixer output, residual stream)."""
        if residual is not None:
            x = self.drop_path(x)
        x, residual = add_norm(x, residual, self.norm, residual_in_fp32=True)
        return self.mixer(x, grid, cls_position), residual


class LocalVim(LocalMambaCheckpoints, nn.Module):
    """LocalVim image classifier and backbone; the arguments are the fields of `LocalVimConfig`."""

    model_type = "local_vim"

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: Literal["token", "avg", ""] | None = None,
        embed_dim: int = 192,
        depth: int = 20,
        directions: list[list[str]] | None = None,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        norm_eps: float = 1e-5,
        cls_token: Literal["none", "middle"] = "none",
        abs_pos_embed: bool = True,
        rope: bool = True,
        rope_pt_seq_len: int = 14,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        device=None,
        dtype=None,
    ):
        super().__init__()
        cfg = self.config = LocalVimConfig(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=num_classes,
            global_pool=global_pool,
            embed_dim=embed_dim,
            depth=depth,
            directions=directions,
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            dt_rank=dt_rank,
            norm_eps=norm_eps,
            cls_token=cls_token,
            abs_pos_embed=abs_pos_embed,
            rope=rope,
            rope_pt_seq_len=rope_pt_seq_len,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
        )
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.global_pool = (
            cfg.global_pool if cfg.global_pool is not None else ("avg" if cls_token == "none" else "token")
        )
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1 if cls_token != "none" else 0
        self.patch_embed = PatchEmbed(
            img_pair(cfg.img_size), patch_size, in_chans, embed_dim, strict_img_size=False, dynamic_img_pad=True, **dd
        )
        self.grid = tuple(self.patch_embed.grid_size)
        num_patches = self.grid[0] * self.grid[1]
        if self.num_prefix_tokens:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim, **dd))
        if abs_pos_embed:
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + self.num_prefix_tokens, embed_dim, **dd))
        self.pos_drop = nn.Dropout(drop_rate)
        self.rope = VisionRope(embed_dim, self.grid, pt_seq_len=rope_pt_seq_len, device=device) if rope else None
        # upstream: block i drops its incoming branch with rate [0, *linspace(0, rate, depth)][i]
        rates = [0.0] + [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        layer_directions = cfg.directions or [None] * depth
        self.layers = nn.ModuleList(
            LocalVimBlock(
                embed_dim,
                MultiScanMamba(
                    embed_dim,
                    directions=layer_directions[i],
                    d_state=d_state,
                    d_conv=d_conv,
                    expand=expand,
                    dt_rank=dt_rank,
                    **dd,
                ),
                norm_eps=norm_eps,
                drop_path=rates[i],
                **dd,
            )
            for i in range(depth)
        )
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.norm_f = RMSNorm(embed_dim, eps=norm_eps, **dd)
        self.head = nn.Linear(embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.feature_info = [
            {"num_chs": embed_dim, "reduction": patch_size, "module": f"layers.{i}"} for i in range(depth)
        ]
        self.grad_checkpointing = False
        self._init_weights(depth)

    def _init_weights(self, depth: int) -> None:
        """Upstream's init: trunc-normal Linears with zero biases (this also zeroes the dt_proj biases, as the
        released training did), pos_embed trunc-normal, out_proj rescaled by 1/sqrt(depth) (GPT-2 scheme)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.config.abs_pos_embed:
            trunc_normal_(self.pos_embed, std=0.02)
        for layer in self.layers:
            out_proj = layer.mixer.out_proj.weight
            nn.init.kaiming_uniform_(out_proj, a=math.sqrt(5))
            with torch.no_grad():
                out_proj /= math.sqrt(depth)

    # --- timm model API ---

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return {
            "stem": r"^cls_token|^pos_embed|^patch_embed",
            "blocks": [(r"^layers\.(\d+)", None), (r"^norm_f", (99999,))],
        }

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            if global_pool not in ("token", "avg", ""):
                raise ValueError(f"global_pool must be 'token', 'avg' or ''; got {global_pool!r}")
            if global_pool == "token" and not self.num_prefix_tokens:
                raise ValueError("global_pool 'token' needs a class token")
            self.global_pool = global_pool
        self.num_classes = num_classes
        device = self.patch_embed.proj.weight.device
        self.head = nn.Linear(self.embed_dim, num_classes, device=device) if num_classes > 0 else nn.Identity()

    # --- forward ---

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int], int | None]:
        """Images (b, c, H, W) -> tokens (b, l, d), the patch grid, the class token's index."""
        p = self.patch_embed.patch_size[0]
        if x.dim() != 4:
            raise InputError(f"expected images (batch, channels, height, width); got shape {tuple(x.shape)}")
        if x.shape[1] != self.config.in_chans:
            raise InputError(f"the model takes {self.config.in_chans}-channel images; got {x.shape[1]} channels")
        if x.shape[2] < p or x.shape[3] < p:
            raise InputError(f"image {x.shape[2]}x{x.shape[3]} is smaller than one {p}x{p} patch")
        grid = self.patch_embed.dynamic_feat_size(x.shape[2:])
        x = self.patch_embed(x)
        cls_position = None
        if self.num_prefix_tokens:
            cls_position = x.shape[1] // 2
            x = torch.cat([x[:, :cls_position], self.cls_token.expand(x.shape[0], -1, -1), x[:, cls_position:]], 1)
        if self.config.abs_pos_embed:
            x = x + self._pos_embed(grid)
        return self.pos_drop(x), grid, cls_position

    def _pos_embed(self, grid: tuple[int, int]) -> torch.Tensor:
        pos = self.pos_embed
        if not self.num_prefix_tokens:
            return resize_grid(pos, self.grid, grid)
        c_old, c_new = self.grid[0] * self.grid[1] // 2, grid[0] * grid[1] // 2
        patches = resize_grid(torch.cat([pos[:, :c_old], pos[:, c_old + 1 :]], 1), self.grid, grid)
        return torch.cat([patches[:, :c_new], pos[:, c_old : c_old + 1], patches[:, c_new:]], 1)

    def _run_blocks(self, x, grid, cls_position, take: list[int] | None = None, stop: int | None = None):
        """Run the blocks; return (last mixer output, residual, [stream after block i for i in take]).

        The stream after block i is its residual plus its mixer output, the input of the next block's add.
        """
        hidden, residual, streams = x, None, []
        for i, layer in enumerate(self.layers[: None if stop is None else stop + 1]):
            if self.rope is not None:
                hidden = self.rope(hidden, grid)
                residual = None if residual is None else self.rope(residual, grid)
            if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
                hidden, residual = torch.utils.checkpoint.checkpoint(
                    layer, hidden, residual, grid, cls_position, use_reentrant=False
                )
            else:
                hidden, residual = layer(hidden, residual, grid, cls_position)
            if take is not None and i in take:
                streams.append(residual + hidden.float())
        return hidden, residual, streams

    def _final_norm(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return add_norm(self.drop_path(hidden), residual, self.norm_f, residual_in_fp32=True)[0]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (b, c, H, W) -> tokens after the final norm (b, l, d), class token (if any) in the middle."""
        x, grid, cls_position = self._tokens(x)
        hidden, residual, _ = self._run_blocks(x, grid, cls_position)
        return self._final_norm(hidden, residual)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens (b, l, d) -> pooled (b, d) -> logits (b, num_classes)."""
        if self.global_pool == "token":
            x = x[:, (x.shape[1] - 1) // 2]
        elif self.global_pool == "avg":
            if self.num_prefix_tokens:
                c = (x.shape[1] - 1) // 2
                x = torch.cat([x[:, :c], x[:, c + 1 :]], dim=1)
            x = x.mean(dim=1)
        return x if pre_logits else self.head(x)

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
        return_prefix_tokens: bool = False,
    ):
        """The residual stream after the chosen blocks, as (b, d, h, w) maps (NCHW) or (b, h*w, d) (NLC).

        Args:
            indices: the last n blocks (int), the given blocks (list), or all (None).
            norm: apply the final RMSNorm to each intermediate.
            return_prefix_tokens: also return the class token of each intermediate, as (map, (b, 1, d)).
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC'; got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.layers), indices)
        tokens, grid, c = self._tokens(x)
        b = tokens.shape[0]
        hidden, residual, streams = self._run_blocks(tokens, grid, c, take, stop=max_index if stop_early else None)
        intermediates = []
        for stream in streams:
            y = self.norm_f(stream).to(tokens.dtype) if norm else stream.to(tokens.dtype)
            prefix = None
            if c is not None:
                prefix, y = y[:, c : c + 1], torch.cat([y[:, :c], y[:, c + 1 :]], dim=1)
            if output_fmt == "NCHW":
                y = y.transpose(1, 2).reshape(b, -1, grid[0], grid[1])
            intermediates.append((y, prefix) if return_prefix_tokens else y)
        if intermediates_only:
            return intermediates
        return self._final_norm(hidden, residual), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ):
        """Drop the blocks after the last one ``indices`` needs (and the final norm / head on request)."""
        take, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        self.feature_info = self.feature_info[: max_index + 1]
        if prune_norm:
            self.norm_f = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take
