"""MEGABYTE (Yu et al., 2023, "MEGABYTE: Predicting Million-byte Sequences with Multiscale Transformers").

As in the paper (section 2), for patches of P bytes:

- patch embedder: each byte gets a global embedding of width ``D_G`` plus a learned position, and a patch is
  the *concatenation* of its P byte embeddings (width ``P * D_G``, the global model's width);
- global model: a decoder-only transformer over patches, its input padded by one learned patch so that patch k
  is predicted from patches < k;
- local model: a small transformer within each patch; its input at position p is the global output's slice p
  projected to ``D_L`` by one shared matrix ``W^GL`` plus the local embedding of byte p - 1 (a learned pad for
  p = 0), and it predicts byte p.

This is `core.hierarchical` with ``variant="megabyte"``, ``patch_proj=False`` (concatenation), ``split_proj=True``
(``W^GL``) and learned global positions. Meta released no MEGABYTE weights; the blocks are pre-LayerNorm GPT
blocks (attention + GELU MLP of 4x width).
"""

from __future__ import annotations

from dataclasses import dataclass

from longseq.bytes.models.base import ByteLM, example
from longseq.core.hierarchical import PatchDecoder
from longseq.core.registry import Family
from longseq.core.stack import MixerStack


@dataclass(kw_only=True)
class MegabyteConfig:
    """A two-level MEGABYTE; the context is ``patch_size * max_patches`` bytes."""

    patch_size: int = 8
    """P, bytes per patch (the paper uses 8 for text)."""
    max_patches: int = 1024
    d_global_byte: int = 64
    """D_G, the global embedding width of one byte; the global model is P * D_G wide."""
    n_layers_global: int = 4
    num_heads_global: int = 8
    d_local: int = 128
    n_layers_local: int = 2
    num_heads_local: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    vocab_size: int = 256

    def __post_init__(self):
        for name in ("patch_size", "max_patches", "d_global_byte", "n_layers_global", "d_local", "n_layers_local"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_global % self.num_heads_global or self.d_local % self.num_heads_local:
            raise ValueError("the global width (patch_size * d_global_byte) and d_local must divide by their heads")
        if self.vocab_size < 256:
            raise ValueError(f"vocab_size must cover the 256 byte values, got {self.vocab_size}")

    @property
    def d_global(self) -> int:
        return self.patch_size * self.d_global_byte

    @property
    def context(self) -> int:
        return self.patch_size * self.max_patches


class Megabyte(ByteLM):
    """MEGABYTE over bytes: ``model(ids)`` (b, l) -> next-byte logits (b, l, vocab)."""

    model_type = "megabyte"

    def __init__(self, config: MegabyteConfig, *, device=None, dtype=None):
        super().__init__()
        self.config = config
        c = config
        dd = {"device": device, "dtype": dtype}
        common = {"rotary": False, "mlp_ratio": c.mlp_ratio, "norm": "layer", "dropout": c.dropout, **dd}
        stages = [
            MixerStack(
                c.d_global, c.n_layers_global, max_seqlen=c.max_patches + 1, num_heads=c.num_heads_global, **common
            ),
            MixerStack(c.d_local, c.n_layers_local, max_seqlen=c.patch_size + 1, num_heads=c.num_heads_local, **common),
        ]
        self.decoder = PatchDecoder(
            stages,
            seq_lens=[c.max_patches, c.patch_size],
            vocab_size=c.vocab_size,
            variant="megabyte",
            patch_embed_dim=c.d_global_byte,
            patch_proj=False,
            split_proj=True,
            pos_emb=[True, False],
            **dd,
        )


FAMILY = Family(
    model_class=Megabyte,
    config_class=MegabyteConfig,
    presets={
        "megabyte-tiny": MegabyteConfig(
            patch_size=4,
            max_patches=16,
            d_global_byte=8,
            n_layers_global=1,
            num_heads_global=2,
            d_local=16,
            n_layers_local=1,
            num_heads_local=2,
        ),
        # A small CPU-trainable model with a 4 KiB context.
        "megabyte-small": MegabyteConfig(
            patch_size=8,
            max_patches=512,
            d_global_byte=32,
            n_layers_global=4,
            num_heads_global=8,
            d_local=128,
            n_layers_local=2,
            num_heads_local=4,
        ),
    },
    example=example,
)
