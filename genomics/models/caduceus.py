"""Caduceus (Schiff et al., 2024): bidirectional Mamba DNA models, reverse-complement (RC) equivariant by design.

    Caduceus-Ph: ids -> embedding -> n x [add -> RMSNorm -> BiMamba] -> add -> RMSNorm -> head (tied)
    Caduceus-PS: the same with RC parameter sharing (RCPS): hidden states carry 2 d channels, a forward half and
                 an RC half, every layer runs on both, and the model satisfies F(RC x) = RC F(x).

BiMamba runs `core.Mamba` forward over the sequence and a second Mamba over its reversal (in/out projections
tied), and adds the two. Over a right-padded batch each sequence is reversed within its own length, so padding
never reaches real positions (the models take no attention mask).

RC of a hidden state (b, l, c) flips the length and the channels. RCPS pieces:

    embedding   [E(x), flip_LC(E(rc(x)))]  = [E(x), flip_C(E(complement(x)))]   (2 d channels)
    mixer       [M(h_1), RC(M(RC(h_2)))]                                            (h_1, h_2 the halves)
    add + norm  [n(h_1 + r_1), RC(n(RC(h_2 + r_2)))]
    LM head     h_1 W^T + flip_C(h_2) W[complement]^T                               (W the embedding)

The released checkpoints were trained with mamba_ssm's fused add-norm, whose RCPS block feeds the *second* half
to the forward slot of the add + norm and the first to the RC slot (the unfused order, swapped; the final norm
is not swapped). ``fused_add_norm=True`` (the default) reproduces that function; False gives the unfused one.
Both are RC-equivariant; they are different functions of the same weights.

Downstream, PS hidden states are made RC-invariant by averaging the forward half with the channel-flipped RC
half, position by position (`embed`); Ph is meant to be used with post-hoc conjoining (run the RC too, average).
The released Hugging Face checkpoints are read by `longseq.genomics.convert` (``longseq.from_pretrained``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from longseq.core.norm import add_norm, make_norm
from longseq.core.registry import Pretrained
from longseq.core.ssm import Mamba
from longseq.genomics.data.tokenizer import COMPLEMENT, EMBEDDING_ROWS, reverse

MODEL_TYPE = "caduceus"


@dataclass(kw_only=True)
class CaduceusConfig:
    """Caduceus's architecture: the HF ``CaduceusConfig`` fields, ``ssm_cfg`` and ``initializer_cfg`` flattened."""

    # Stack
    d_model: int = 256
    n_layer: int = 4
    vocab_size: int = EMBEDDING_ROWS  # the released configs store the padded size, 16
    pad_vocab_size_multiple: int = 8
    rcps: bool = True  # True: Caduceus-PS; False: Caduceus-Ph
    bidirectional: bool = True
    bidirectional_strategy: Literal["add", "ew_multiply"] = "add"
    bidirectional_weight_tie: bool = True
    fused_add_norm: bool = True  # the released semantics (see the module docstring)
    rms_norm: bool = True
    residual_in_fp32: bool = False
    norm_epsilon: float = 1e-5
    # Mamba (the HF ssm_cfg)
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | Literal["auto"] = "auto"
    dt_min: float = 1e-3
    dt_max: float = 0.1
    dt_init: Literal["random", "constant"] = "random"
    dt_scale: float = 1.0
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False
    # Init (the HF initializer_cfg)
    initializer_range: float = 0.02
    rescale_prenorm_residual: bool = True
    n_residuals_per_layer: int = 1
    # The sequence length it was trained at (the default embedding window); not in the HF config
    max_seq_len: int | None = None

    def __post_init__(self):
        if min(self.d_model, self.n_layer, self.vocab_size, self.pad_vocab_size_multiple) < 1:
            raise ValueError("d_model, n_layer, vocab_size and pad_vocab_size_multiple must be positive")
        if self.bidirectional_strategy not in ("add", "ew_multiply"):
            raise ValueError(
                f"bidirectional_strategy must be 'add' or 'ew_multiply'; got {self.bidirectional_strategy}"
            )
        if self.padded_vocab_size < EMBEDDING_ROWS:
            raise ValueError(f"the DNA vocabulary needs {EMBEDDING_ROWS} embedding rows; got {self.padded_vocab_size}")
        if self.max_seq_len is not None and self.max_seq_len < 1:
            raise ValueError(f"max_seq_len must be positive or None; got {self.max_seq_len}")

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return math.ceil(self.vocab_size / m) * m


# kuleshov-group/caduceus-{ps,ph}_seqlen-*_d_model-*_n_layer-*; then tiny ones for tests.
PRESETS: dict[str, CaduceusConfig] = {
    "caduceus-ps-131k": CaduceusConfig(rcps=True, d_model=256, n_layer=16, max_seq_len=131072),
    "caduceus-ph-131k": CaduceusConfig(rcps=False, d_model=256, n_layer=16, max_seq_len=131072),
    "caduceus-ps-1k-d256": CaduceusConfig(rcps=True, d_model=256, n_layer=4, max_seq_len=1024),
    "caduceus-ph-1k-d256": CaduceusConfig(rcps=False, d_model=256, n_layer=4, max_seq_len=1024),
    "caduceus-ps-1k-d118": CaduceusConfig(rcps=True, d_model=118, n_layer=4, max_seq_len=1024),
    "caduceus-ph-1k-d118": CaduceusConfig(rcps=False, d_model=118, n_layer=4, max_seq_len=1024),
    "caduceus-ps-test": CaduceusConfig(rcps=True, d_model=16, n_layer=2, d_state=4, max_seq_len=256),
    "caduceus-ph-test": CaduceusConfig(rcps=False, d_model=16, n_layer=2, d_state=4, max_seq_len=256),
}


def rc_hidden(h: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """RC of hidden states (b, l, c): reverse the positions (within each length) and the channels."""
    if lengths is None:
        return h.flip(1, -1)  # one pass
    return reverse(h, lengths).flip(-1)


class BiMamba(nn.Module):
    """Mamba over the sequence plus Mamba over its reversal (Caduceus's ``BiMambaWrapper``)."""

    def __init__(self, d_model: int, config: CaduceusConfig, *, device=None, dtype=None):
        super().__init__()
        kwargs = {
            "d_state": config.d_state,
            "d_conv": config.d_conv,
            "expand": config.expand,
            "dt_rank": config.dt_rank,
            "dt_min": config.dt_min,
            "dt_max": config.dt_max,
            "dt_init": config.dt_init,
            "dt_scale": config.dt_scale,
            "dt_init_floor": config.dt_init_floor,
            "conv_bias": config.conv_bias,
            "bias": config.bias,
            "device": device,
            "dtype": dtype,
        }
        self.strategy = config.bidirectional_strategy
        self.mamba_fwd = Mamba(d_model, **kwargs)
        self.mamba_rev = Mamba(d_model, **kwargs) if config.bidirectional else None
        if self.mamba_rev is not None and config.bidirectional_weight_tie:
            # The projections hold most of the parameters; the reverse scan keeps its own conv, dt, A and D.
            self.mamba_rev.in_proj.weight = self.mamba_fwd.in_proj.weight
            self.mamba_rev.in_proj.bias = self.mamba_fwd.in_proj.bias
            self.mamba_rev.out_proj.weight = self.mamba_fwd.out_proj.weight
            self.mamba_rev.out_proj.bias = self.mamba_fwd.out_proj.bias

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x (b, l, d) -> (b, l, d)."""
        fwd, rev = self.mamba_fwd, self.mamba_rev
        if rev is None:
            return fwd(x)
        if self.strategy == "add" and self._projections_tied():
            # Both projections act position by position, so the reverse mixer's in_proj output is the forward one's
            # reversed, and out_proj(a) + out_proj(b) = out_proj(a + b) (+ a second bias): one in_proj and one
            # out_proj instead of two each, which were most of the FLOPs.
            xz = fwd.in_proj(x)
            out = fwd.out_proj(fwd.mix(xz) + reverse(rev.mix(reverse(xz, lengths)), lengths))
            return out if fwd.out_proj.bias is None else out + fwd.out_proj.bias
        out, out_rev = fwd(x), reverse(rev(reverse(x, lengths)), lengths)
        return out + out_rev if self.strategy == "add" else out * out_rev

    def _projections_tied(self) -> bool:
        pairs = [(self.mamba_fwd.in_proj, self.mamba_rev.in_proj), (self.mamba_fwd.out_proj, self.mamba_rev.out_proj)]
        return all(a.weight is b.weight and a.bias is b.bias for a, b in pairs)


class CaduceusBlock(nn.Module):
    """Add -> norm -> BiMamba (no MLP); with ``rcps`` both over the forward half and, RC'd, over the RC half."""

    def __init__(self, config: CaduceusConfig, *, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.rcps = config.rcps
        self.swap = config.rcps and config.fused_add_norm
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = make_norm("rms" if config.rms_norm else "layer", config.d_model, eps=config.norm_epsilon, **dd)
        self.mixer = BiMamba(config.d_model, config, **dd)

    def forward(
        self, h: torch.Tensor, residual: torch.Tensor | None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """h, residual: (b, l, c) with c = 2 d under RCPS, else d -> (mixer output, residual stream)."""
        if not self.rcps:
            h, residual = add_norm(h, residual, self.norm, residual_in_fp32=self.residual_in_fp32)
            return self.mixer(h, lengths), residual
        h, residual = rcps_add_norm(h, residual, self.norm, lengths, swap=self.swap, fp32=self.residual_in_fp32)
        fwd, rc = h.chunk(2, dim=-1)
        h = torch.cat([self.mixer(fwd, lengths), rc_hidden(self.mixer(rc_hidden(rc, lengths), lengths), lengths)], -1)
        return h, residual


def rcps_add_norm(
    h: torch.Tensor,
    residual: torch.Tensor | None,
    norm: nn.Module,
    lengths: torch.Tensor | None,
    *,
    swap: bool,
    fp32: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RC-equivariant add + norm over (b, l, 2 d): [n(a), RC(n(RC(b)))] for halves a, b of ``h + residual``.

    ``swap`` takes the second half as ``a`` (the released fused-add-norm order) instead of the first.
    """
    h_halves = h.chunk(2, dim=-1)
    r_halves = (None, None) if residual is None else residual.chunk(2, dim=-1)
    first, second = (1, 0) if swap else (0, 1)
    x_fwd, res_fwd = add_norm(h_halves[first], r_halves[first], norm, residual_in_fp32=fp32)
    rc_res = None if residual is None else rc_hidden(r_halves[second], lengths)
    x_rc, res_rc = add_norm(rc_hidden(h_halves[second], lengths), rc_res, norm, residual_in_fp32=fp32)
    x = torch.cat([x_fwd, rc_hidden(x_rc, lengths)], dim=-1)
    return x, torch.cat([res_fwd, rc_hidden(res_rc, lengths)], dim=-1)


class Caduceus(Pretrained, nn.Module):
    """Caduceus-PS (``rcps=True``) or -Ph with its masked-LM head. ``model(input_ids)`` gives logits (b, l, 16).

    Right-padded batches: pass ``lengths`` (b,) so each sequence is reversed within its own length.
    """

    model_type = MODEL_TYPE
    gradient_checkpointing = False  # a training setting (`--trainer.gradient_checkpointing`), not saved

    def __init__(self, config: CaduceusConfig, *, device=None, dtype=None):
        super().__init__()
        self.config = config
        dd = {"device": device, "dtype": dtype}
        d = config.d_model
        rows = config.padded_vocab_size
        self.embedding = nn.Embedding(rows, d, **dd)
        complement = torch.tensor(COMPLEMENT + tuple(range(len(COMPLEMENT), rows)), device=device)
        self.register_buffer("complement", complement, persistent=False)
        self.layers = nn.ModuleList(CaduceusBlock(config, **dd) for _ in range(config.n_layer))
        self.norm_f = make_norm("rms" if config.rms_norm else "layer", d, eps=config.norm_epsilon, **dd)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Caduceus's init: N(0, initializer_range) embedding, zero Linear biases (not dt_proj's), and Mamba's
        out_proj re-drawn (Kaiming uniform) and divided by sqrt(n_residuals_per_layer * n_layer)."""
        cfg = self.config
        nn.init.normal_(self.embedding.weight, std=cfg.initializer_range)
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None and not getattr(module.bias, "_no_reinit", 0):
                nn.init.zeros_(module.bias)
        if cfg.rescale_prenorm_residual:
            for module in self.modules():
                if isinstance(module, Mamba):
                    nn.init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))
                    with torch.no_grad():
                        module.out_proj.weight /= math.sqrt(cfg.n_residuals_per_layer * cfg.n_layer)

    @property
    def context_length(self) -> int | None:
        """The sequence length the model was trained at, when known."""
        return self.config.max_seq_len

    @property
    def embedding_dim(self) -> int:
        return self.config.d_model

    def _embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(input_ids)
        if not self.config.rcps:
            return x
        # flip_LC(E(rc(x))) with rc = complement after reversal: the two reversals cancel position by position.
        return torch.cat([x, self.embedding(self.complement[input_ids]).flip(-1)], dim=-1)

    def hidden_states(
        self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None, *, layer: int = -1
    ) -> torch.Tensor:
        """input_ids (b, l) -> (b, l, 2 d) for PS (forward half, RC half), (b, l, d) for Ph.

        Args:
            lengths: (b,) the true lengths of a right-padded batch.
            layer: -1 or ``n_layer``: final hidden states (after ``norm_f``); 0: token embeddings;
                k in 1 .. n_layer - 1: the residual stream after block k.
        """
        n = self.config.n_layer
        if not -1 <= layer <= n:
            raise ValueError(f"layer must be in -1 .. {n}; got {layer}")
        blocks = n if layer == -1 else layer
        if lengths is not None and bool((lengths == input_ids.shape[1]).all()):
            lengths = None  # no padding: plain flips reverse every sequence, several times cheaper than gathers
        h, residual = self._embed_tokens(input_ids), None
        for block in self.layers[:blocks]:
            if self.gradient_checkpointing and torch.is_grad_enabled():  # keep block inputs only; recompute
                h, residual = checkpoint(block, h, residual, lengths, use_reentrant=False)
            else:
                h, residual = block(h, residual, lengths)
        if blocks == 0:
            return h
        if blocks < n:
            return (h + residual).to(h.dtype)
        if self.config.rcps:
            return rcps_add_norm(h, residual, self.norm_f, lengths, swap=False, fp32=self.config.residual_in_fp32)[0]
        return add_norm(h, residual, self.norm_f, residual_in_fp32=self.config.residual_in_fp32)[0]

    def lm_head(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states -> logits over the 16 rows, with the head tied to the embedding (RC-equivariant for PS)."""
        weight = self.embedding.weight
        if not self.config.rcps:
            return h @ weight.T
        fwd, rc = h.chunk(2, dim=-1)
        return fwd @ weight.T + rc.flip(-1) @ weight[self.complement].T

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (b, l) -> logits (b, l, padded vocab)."""
        return self.lm_head(self.hidden_states(input_ids, lengths))

    def embed(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None, *, layer: int = -1) -> torch.Tensor:
        """Per-position embeddings (b, l, d). PS: (forward half + channel-flipped RC half) / 2, which is invariant
        to RC (the RC input gives the reversed embeddings); its mean over positions is what the Caduceus code pools."""
        h = self.hidden_states(input_ids, lengths, layer=layer)
        if not self.config.rcps:
            return h
        fwd, rc = h.chunk(2, dim=-1)
        return (fwd + rc.flip(-1)) / 2
