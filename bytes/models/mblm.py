"""MBLM, the Multiscale Byte Language Model (Egli et al., 2025; ai4sd/multiscale-byte-lm).

A model-agnostic hierarchy of N stages, configured global to local as MBLM does (``hidden_dims``,
``num_layers``, ``seq_lens``, a block per stage): every stage is a stack of transformer, Mamba, Mamba-2 or
Hyena blocks; the mechanics are those of `core.hierarchical` with ``variant="mblm"``: learned start token per
stage, per-stage byte embeddings concatenated over a unit and projected (LayerNorm -> Linear -> LayerNorm),
one Linear from each stage output to its children, next-byte prediction across patch boundaries, and
activation checkpointing of the stages after the first in chunks of their patch batch
(``train_checkpoint_chunks``), which makes million-byte contexts trainable.

Our defaults differ from the released code: bytes use the full vocabulary of 256 without a pad id (padding
only ever follows real bytes and is cut off, so it needs no id of its own; MBLM's ``ignore_index=pad`` also
drops every real 0x00 byte from its loss when the pad id is 0, as in MEGABYTE-pytorch), transformer blocks are
pre-norm attention + GELU MLP without lucidrains' token shift, a Mamba stage is `core.ssm.Mamba` or
`core.ssm.Mamba2` blocks on any device (MBLM falls back from Mamba-2 to mambapy's Mamba-1 without CUDA), and
generation from an empty prompt predicts the first byte from the local start token alone (as training does).
Options follow the package exactly instead, and the checkpoints of mblm and MEGABYTE-pytorch load with them
set (`bytes.convert`): ``StageConfig.block="lucidrains"`` (token shift, clamped RMSNorm, any head width),
``head_dim``, ``pos_rope`` (``pos_emb_type="rope"``), ``final_norm=False`` (mambapy stages),
``MBLMConfig.pad_id`` (left out of `ByteLM.loss`) and ``empty_start_context`` (the packages' ``forward_empty``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from longseq.bytes.convert import LAYOUTS
from longseq.bytes.models.base import ByteLM, example
from longseq.bytes.models.shift import ShiftTransformer
from longseq.core.hierarchical import PatchDecoder
from longseq.core.registry import Family
from longseq.core.stack import MixerStack


@dataclass(kw_only=True)
class StageConfig:
    """One stage of the hierarchy."""

    d_model: int
    n_layers: int
    seq_len: int
    """Units per parent sequence (the global stage: the most patches in the context)."""
    mixer: Literal["attention", "mamba", "mamba2", "hyena"] = "attention"
    block: Literal["prenorm", "lucidrains"] = "prenorm"
    """"prenorm": our pre-norm blocks (`core.stack.MixerStack`). "lucidrains": the transformer layers of
    MEGABYTE-pytorch, which mblm's transformer stages run too (`bytes.models.shift.ShiftTransformer`: token shift
    before each sublayer, its clamped RMSNorm); converted checkpoints of both packages use it (attention only)."""
    # attention
    num_heads: int = 4
    head_dim: int | None = None
    """Width of an attention head (default d_model / num_heads); other widths with the "lucidrains" block only."""
    rotary: bool = True
    window: int | None = None
    # Mamba / Mamba-2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    headdim: int = 32
    # every block
    mlp_ratio: float = 2.0
    """MLP width / d_model after each mixer (MBLM's transformer ``ff_multiplier`` 2; 0 = no MLP, as its Mamba)."""
    final_norm: bool = True
    """End the stage with a norm (mblm's Mamba stages on a CPU, mambapy's ``Mamba``, have none)."""
    pos_emb: bool = False
    """Add a learned embedding of the unit index (MBLM's ``pos_emb_type="fixed"``)."""
    pos_rope: bool = False
    """Rotate each unit embedding by its index instead (MBLM's ``pos_emb_type="rope"``; even d_model)."""

    def __post_init__(self):
        for name in ("d_model", "n_layers", "seq_len", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"stage {name} must be >= 1, got {getattr(self, name)}")
        if self.block not in ("prenorm", "lucidrains"):
            raise ValueError(f"stage block must be 'prenorm' or 'lucidrains', got {self.block!r}")
        if self.block == "lucidrains" and (self.mixer != "attention" or not self.final_norm or self.window):
            raise ValueError("the 'lucidrains' block is full causal attention with a final norm (mixer 'attention')")
        if self.head_dim is not None and (self.block != "lucidrains" or self.head_dim < 1):
            raise ValueError("head_dim (>= 1) is an option of the 'lucidrains' block only")
        if self.mixer == "attention" and self.head_dim is None and self.d_model % self.num_heads:
            raise ValueError(f"attention stage: d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
        if self.pos_emb and self.pos_rope:
            raise ValueError("a stage takes pos_emb or pos_rope, not both")
        if self.pos_rope and self.d_model % 2:
            raise ValueError(f"pos_rope rotates pairs of channels: d_model must be even, got {self.d_model}")
        if self.mlp_ratio < 0:
            raise ValueError(f"mlp_ratio must be >= 0, got {self.mlp_ratio}")


@dataclass(kw_only=True)
class MBLMConfig:
    """An N-stage MBLM, stages listed global to local."""

    stages: list[StageConfig] = field(default_factory=list)
    vocab_size: int = 256
    train_checkpoint_chunks: list[int] | None = None
    """Per stage after the first: checkpoint its patch batch in this many chunks when training (0: off)."""
    dropout: float = 0.0
    pad_id: int | None = None
    """The packages' pad id: `ByteLM.loss` leaves targets equal to it out, as mblm and MEGABYTE-pytorch do
    (None: every byte counts; padding needs no id here, see the module docstring)."""
    empty_start_context: bool = False
    """Generating from an empty prompt, condition each stage's start token on its parent's, as the packages'
    ``forward_empty`` does (their training and loss predict byte 0 from the local start token alone, as we do)."""

    def __post_init__(self):
        # from config.json the stages arrive as plain dicts
        self.stages = [s if isinstance(s, StageConfig) else StageConfig(**s) for s in self.stages]
        if not self.stages:
            raise ValueError("an MBLM needs at least one stage")
        if self.vocab_size < 256:
            raise ValueError(f"vocab_size must cover the 256 byte values, got {self.vocab_size}")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id must lie in [0, {self.vocab_size}), got {self.pad_id}")
        chunks = self.train_checkpoint_chunks
        if chunks is not None and (len(chunks) != len(self.stages) - 1 or any(c < 0 for c in chunks)):
            raise ValueError(f"train_checkpoint_chunks needs {len(self.stages) - 1} entries >= 0, got {chunks}")

    @property
    def context(self) -> int:
        return math.prod(s.seq_len for s in self.stages)


class MBLM(ByteLM):
    """MBLM over bytes: ``model(ids)`` (b, l) -> next-byte logits (b, l, vocab)."""

    model_type = "mblm"

    def __init__(self, config: MBLMConfig, *, device=None, dtype=None):
        super().__init__()
        self.config = config
        dd = {"device": device, "dtype": dtype}
        self.decoder = PatchDecoder(
            [_stage(s, config.dropout, dd) for s in config.stages],
            seq_lens=[s.seq_len for s in config.stages],
            vocab_size=config.vocab_size,
            variant="mblm",
            pos_emb=[s.pos_emb for s in config.stages],
            pos_rope=[s.pos_rope for s in config.stages],
            checkpoint_chunks=config.train_checkpoint_chunks,
            empty_start_context=config.empty_start_context,
            **dd,
        )


def _stage(s: StageConfig, dropout: float, dd: dict) -> nn.Module:
    if s.block == "lucidrains":
        return ShiftTransformer(
            s.d_model,
            s.n_layers,
            num_heads=s.num_heads,
            head_dim=s.head_dim or s.d_model // s.num_heads,
            rotary=s.rotary,
            mlp_ratio=s.mlp_ratio,
            max_seqlen=s.seq_len + 1,
            dropout=dropout,
            **dd,
        )
    return MixerStack(
        s.d_model,
        s.n_layers,
        mixer=s.mixer,
        max_seqlen=s.seq_len + 1,
        num_heads=s.num_heads,
        rotary=s.rotary,
        window=s.window,
        d_state=s.d_state,
        d_conv=s.d_conv,
        expand=s.expand,
        headdim=s.headdim,
        mlp_ratio=s.mlp_ratio,
        final_norm=s.final_norm,
        dropout=dropout,
        **dd,
    )


FAMILY = Family(
    model_class=MBLM,
    config_class=MBLMConfig,
    layouts=LAYOUTS,
    presets={
        # Tiny models for tests.
        "mblm-tiny": MBLMConfig(
            stages=[
                StageConfig(d_model=32, n_layers=1, seq_len=16, num_heads=2),
                StageConfig(d_model=32, n_layers=1, seq_len=4, num_heads=2),
            ]
        ),
        "mblm-tiny-3stage": MBLMConfig(
            stages=[
                StageConfig(mixer="mamba", d_model=32, n_layers=1, seq_len=8, mlp_ratio=0.0),
                StageConfig(d_model=32, n_layers=1, seq_len=4, num_heads=2),
                StageConfig(d_model=16, n_layers=1, seq_len=4, num_heads=2),
            ],
            train_checkpoint_chunks=[2, 2],
        ),
        # The `make demo` model: learns this repository's sources in a couple of minutes on a CPU.
        "mblm-demo": MBLMConfig(
            stages=[
                StageConfig(d_model=96, n_layers=2, seq_len=64, num_heads=4),
                StageConfig(d_model=64, n_layers=1, seq_len=8, num_heads=4),
            ]
        ),
        # Small CPU-trainable models with a 4 KiB context, named as MBLM's configs (t: transformer, s: Mamba).
        "mblm-small-tt": MBLMConfig(
            stages=[
                StageConfig(d_model=256, n_layers=4, seq_len=512, num_heads=8),
                StageConfig(d_model=128, n_layers=2, seq_len=8, num_heads=4),
            ]
        ),
        "mblm-small-st": MBLMConfig(
            stages=[
                StageConfig(mixer="mamba", d_model=256, n_layers=4, seq_len=512, mlp_ratio=0.0),
                StageConfig(d_model=128, n_layers=2, seq_len=8, num_heads=4),
            ]
        ),
        # Three stages with a 1,048,576-byte context (MBLM's 1M layout: seq_lens 8192 x 16 x 8).
        "mblm-1m": MBLMConfig(
            stages=[
                StageConfig(mixer="mamba", d_model=128, n_layers=2, seq_len=8192, mlp_ratio=0.0),
                StageConfig(d_model=64, n_layers=1, seq_len=16, num_heads=4),
                StageConfig(d_model=64, n_layers=1, seq_len=8, num_heads=4),
            ],
            train_checkpoint_chunks=[8, 32],
        ),
    },
    example=example,
)
