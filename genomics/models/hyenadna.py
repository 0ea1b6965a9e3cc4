"""HyenaDNA (Nguyen et al., 2023): a causal character-level DNA language model of Hyena blocks.

    ids -> embedding -> dropout -> n x [LayerNorm -> Hyena -> add -> LayerNorm -> MLP (GELU tanh) -> add]
        -> LayerNorm (ln_f) -> lm_head

Built on `core.HyenaOperator` and `core.Block` (pre-norm, the residual kept apart). Official checkpoints
(Hugging Face ``LongSafari/hyenadna-*-hf`` directories, original Lightning ``weights.ckpt`` directories) are
converted by `longseq.genomics.convert`, which declares the family: ``longseq.from_pretrained`` reads them all,
and every preset below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from longseq.core.block import Block
from longseq.core.hyena import HyenaOperator
from longseq.core.mlp import Mlp
from longseq.core.norm import LayerNorm
from longseq.core.registry import Pretrained
from longseq.genomics.data.tokenizer import EMBEDDING_ROWS, VOCAB_SIZE

MODEL_TYPE = "hyenadna"


@dataclass(kw_only=True)
class HyenaDNAConfig:
    """HyenaDNA's architecture (the fields of the Hugging Face ``HyenaConfig`` that change the function)."""

    # Stack
    d_model: int = 128
    n_layer: int = 2
    d_inner: int | None = None  # MLP width; None means 4 * d_model
    vocab_size: int = VOCAB_SIZE
    pad_vocab_size_multiple: int = 8
    layer_norm_epsilon: float = 1e-5
    residual_in_fp32: bool = False
    tie_word_embeddings: bool = False  # the HF checkpoints store lm_head apart; the original ties it
    # Hyena operator
    max_seq_len: int = 1026  # l_max: the filter's positional features are normalised by it
    emb_dim: int = 5
    filter_order: int = 64
    short_filter_order: int = 3
    num_inner_mlps: int = 2
    activation_freq: float = 10.0
    train_freq: bool = True
    modulate: bool = True
    filter_shift: float = 0.05  # 0.05 in the released code; the Lightning training code defaulted to 0.0
    beyond_l_max: Literal["error", "zero", "extrapolate"] = "error"
    # Regularisation and init
    embed_dropout: float = 0.1
    resid_dropout: float = 0.0
    hyena_dropout: float = 0.0
    initializer_range: float = 0.02

    def __post_init__(self):
        if self.d_inner is None:
            self.d_inner = 4 * self.d_model
        if min(self.d_model, self.n_layer, self.d_inner, self.vocab_size, self.pad_vocab_size_multiple) < 1:
            raise ValueError("d_model, n_layer, d_inner, vocab_size and pad_vocab_size_multiple must be positive")
        if self.max_seq_len < 2:
            raise ValueError(f"max_seq_len must be >= 2; got {self.max_seq_len}")
        if self.beyond_l_max not in ("error", "zero", "extrapolate"):
            raise ValueError(f"beyond_l_max must be 'error', 'zero' or 'extrapolate'; got {self.beyond_l_max!r}")
        for name in ("embed_dropout", "resid_dropout", "hyena_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)}")

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return math.ceil(self.vocab_size / m) * m


# LongSafari/hyenadna-*-seqlen(-hf): n_layer, d_model, max_seq_len (d_inner = 4 d_model); then a tiny one for tests.
PRESETS: dict[str, HyenaDNAConfig] = {
    "hyenadna-tiny-1k": HyenaDNAConfig(n_layer=2, d_model=128, max_seq_len=1026),
    "hyenadna-tiny-1k-d256": HyenaDNAConfig(n_layer=2, d_model=256, max_seq_len=1026),
    "hyenadna-tiny-16k-d128": HyenaDNAConfig(n_layer=2, d_model=128, max_seq_len=16386),
    "hyenadna-small-32k": HyenaDNAConfig(n_layer=4, d_model=256, max_seq_len=32770),
    "hyenadna-medium-160k": HyenaDNAConfig(n_layer=8, d_model=256, max_seq_len=160002),
    "hyenadna-medium-450k": HyenaDNAConfig(n_layer=8, d_model=256, max_seq_len=450002),
    "hyenadna-large-1m": HyenaDNAConfig(n_layer=8, d_model=256, max_seq_len=1000002),
    "hyenadna-test": HyenaDNAConfig(n_layer=2, d_model=16, max_seq_len=256, filter_order=16),
}


class HyenaDNA(Pretrained, nn.Module):
    """The HyenaDNA language model. ``model(input_ids)`` gives logits (b, l, padded vocab = 16).

    Right-padded batches need no mask: the model is causal, so padding after a sequence never reaches it.
    """

    model_type = MODEL_TYPE
    gradient_checkpointing = False  # a training setting (`--trainer.gradient_checkpointing`), not saved

    def __init__(self, config: HyenaDNAConfig, *, device=None, dtype=None):
        super().__init__()
        self.config = config
        dd = {"device": device, "dtype": dtype}
        d = config.d_model
        if config.padded_vocab_size < EMBEDDING_ROWS and config.vocab_size == VOCAB_SIZE:
            raise ValueError(f"the DNA vocabulary needs {EMBEDDING_ROWS} embedding rows")
        self.embedding = nn.Embedding(config.padded_vocab_size, d, **dd)
        self.embed_drop = nn.Dropout(config.embed_dropout)
        self.layers = nn.ModuleList(
            Block(
                HyenaOperator(
                    d,
                    l_max=config.max_seq_len,
                    filter_order=config.filter_order,
                    emb_dim=config.emb_dim,
                    short_filter_order=config.short_filter_order,
                    num_inner_mlps=config.num_inner_mlps,
                    activation_freq=config.activation_freq,
                    train_freq=config.train_freq,
                    modulate=config.modulate,
                    shift=config.filter_shift,
                    dropout=config.hyena_dropout,
                    beyond_l_max=config.beyond_l_max,
                    **dd,
                ),
                LayerNorm(d, eps=config.layer_norm_epsilon, **dd),
                mlp=Mlp(d, config.d_inner, activation="gelu_tanh", **dd),
                norm2=LayerNorm(d, eps=config.layer_norm_epsilon, **dd),
                residual_in_fp32=config.residual_in_fp32,
                dropout=config.resid_dropout,
            )
            for _ in range(config.n_layer)
        )
        self.ln_f = LayerNorm(d, eps=config.layer_norm_epsilon, **dd)
        self.lm_head = nn.Linear(d, config.padded_vocab_size, bias=False, **dd)
        self.reset_parameters()
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embedding.weight

    def reset_parameters(self) -> None:
        """HyenaDNA's init: N(0, initializer_range) for every Linear (filter MLPs included) and the embedding,
        zero Linear biases, and out_proj / fc2 weights scaled by 1 / sqrt(2 n_layer) (GPT-2)."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for layer in self.layers:
            for weight in (layer.mixer.out_proj.weight, layer.mlp.fc2.weight):
                nn.init.normal_(weight, std=std / math.sqrt(2 * self.config.n_layer))

    @property
    def context_length(self) -> int:
        """The longest input the model was trained on (HyenaDNA's ``max_seq_len``)."""
        return self.config.max_seq_len

    @property
    def embedding_dim(self) -> int:
        return self.config.d_model

    def hidden_states(self, input_ids: torch.Tensor, *, layer: int = -1) -> torch.Tensor:
        """input_ids (b, l) -> (b, l, d).

        Args:
            layer: how many blocks to run. -1 or ``n_layer``: the final hidden states (after ``ln_f``);
                0: the token embeddings; k in 1 .. n_layer - 1: the residual stream after block k.
        """
        n = self.config.n_layer
        if not -1 <= layer <= n:
            raise ValueError(f"layer must be in -1 .. {n}; got {layer}")
        blocks = n if layer == -1 else layer
        x = self.embed_drop(self.embedding(input_ids))
        residual = None
        for block in self.layers[:blocks]:
            if self.gradient_checkpointing and torch.is_grad_enabled():  # keep block inputs only; recompute
                x, residual = checkpoint(block, x, residual, use_reentrant=False)
            else:
                x, residual = block(x, residual)
        if blocks == 0:
            return x
        residual = x + residual
        return self.ln_f(residual) if blocks == n else residual.to(x.dtype)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (b, l) -> logits (b, l, padded vocab)."""
        return self.lm_head(self.hidden_states(input_ids))

    def embed(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None, *, layer: int = -1) -> torch.Tensor:
        """Per-position embeddings (b, l, d) for right-padded ids; ``lengths`` is unused (the model is causal)."""
        return self.hidden_states(input_ids, layer=layer)
