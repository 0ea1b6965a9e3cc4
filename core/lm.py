"""A causal language model over any stack of core mixers, with cached generation.

The layout is mamba_ssm's ``MambaLMHeadModel``, so its checkpoints map 1:1 (`core.convert`, which also
declares the family to `core.registry`)::

    backbone.embedding            token embedding (v_padded, d)
    backbone.layers.N             `core.block.Block`: norm, mixer [, norm2, mlp]
    backbone.norm_f               final norm after the last residual add
    lm_head                       (v_padded, d), tied to the embedding by default

The mixer of each layer follows a pattern: "mamba", "mamba2", "attention" (causal), "swa" (causal sliding-window
attention) or "hyena". Attention and Hyena come from `core.attention` and `core.hyena`, imported only when a
config uses them. Generation runs the prompt once through the parallel forward with per-layer states (the
recurrent states and KV caches), then one `step` per new token; the prefix is never recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.block import Block
from longseq.core.io import InputError
from longseq.core.mlp import Mlp
from longseq.core.norm import add_norm, make_norm
from longseq.core.registry import Pretrained
from longseq.core.ssm import Mamba, Mamba2

MixerKind = Literal["mamba", "mamba2", "attention", "swa", "hyena"]
MIXER_KINDS: tuple[str, ...] = get_args(MixerKind)


@dataclass(kw_only=True)
class MambaOptions:
    """Architecture of "mamba" layers (mamba_ssm ``ssm_cfg`` for ``Mamba``)."""

    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | Literal["auto"] = "auto"
    conv_bias: bool = True
    bias: bool = False


@dataclass(kw_only=True)
class Mamba2Options:
    """Architecture of "mamba2" layers (mamba_ssm ``ssm_cfg`` for ``Mamba2``)."""

    d_state: int = 128
    d_conv: int = 4
    expand: int = 2
    headdim: int = 64
    ngroups: int = 1
    D_has_hdim: bool = False
    chunk_size: int = 256
    conv_bias: bool = True
    bias: bool = False


@dataclass(kw_only=True)
class AttentionOptions:
    """Architecture of "attention" and "swa" layers (mamba_ssm ``attn_cfg`` names); ``window`` is for "swa"."""

    num_heads: int = 8
    num_heads_kv: int | None = None
    head_dim: int | None = None
    window: int = 256
    qkv_proj_bias: bool = True
    out_proj_bias: bool = True
    softmax_scale: float | None = None
    rotary_emb_dim: int = 0
    rotary_emb_base: float = 10000.0
    rotary_emb_interleaved: bool = False


@dataclass(kw_only=True)
class HyenaOptions:
    """Architecture of "hyena" layers (`core.hyena.HyenaOperator`)."""

    l_max: int = 1024
    filter_order: int = 64
    emb_dim: int = 5
    short_filter_order: int = 3
    num_inner_mlps: int = 2
    activation_freq: float = 10.0
    train_freq: bool = True
    modulate: bool = True
    shift: float = 0.05
    beyond_l_max: Literal["error", "zero", "extrapolate"] = "error"


_OPTIONS = {"mamba": MambaOptions, "mamba2": Mamba2Options, "attention": AttentionOptions, "hyena": HyenaOptions}


@dataclass(kw_only=True)
class LMConfig:
    """A causal LM (mamba_ssm ``MambaConfig`` plus the mixer pattern).

    Args:
        vocab_size: real vocabulary size; the tables are padded up to a multiple of ``pad_vocab_size_multiple``.
        d_model, n_layer: width and depth.
        mixer: one kind for every layer, or a list of kinds: n_layer of them, or a shorter pattern repeated
            (its length must divide n_layer).
        d_intermediate: a gated (SwiGLU) MLP after each mixer, of this width rounded up to a multiple of 128
            (as mamba_ssm's ``GatedMLP``); 0 = no MLP (as Mamba).
        rms_norm: RMSNorm (else LayerNorm) everywhere. norm_epsilon: their eps.
        residual_in_fp32: keep the residual stream in float32.
        tie_embeddings: lm_head shares the embedding matrix.
        initializer_range, rescale_prenorm_residual: mamba_ssm's initialisation.
        mamba, mamba2, attention, hyena: per-kind mixer options (used by layers of that kind).
    """

    vocab_size: int
    d_model: int
    n_layer: int
    mixer: MixerKind | list[MixerKind] = "mamba"
    d_intermediate: int = 0
    pad_vocab_size_multiple: int = 8
    rms_norm: bool = True
    norm_epsilon: float = 1e-5
    residual_in_fp32: bool = True
    tie_embeddings: bool = True
    initializer_range: float = 0.02
    rescale_prenorm_residual: bool = True
    mamba: MambaOptions = field(default_factory=MambaOptions)
    mamba2: Mamba2Options = field(default_factory=Mamba2Options)
    attention: AttentionOptions = field(default_factory=AttentionOptions)
    hyena: HyenaOptions = field(default_factory=HyenaOptions)

    def __post_init__(self):
        for name, cls in _OPTIONS.items():  # from config.json the options arrive as dicts
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, cls(**value))
            elif not isinstance(value, cls):
                raise ValueError(f"{name} must be a {cls.__name__} or a dict; got {type(value).__name__}")
        for name in ("vocab_size", "d_model", "n_layer", "pad_vocab_size_multiple"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive; got {getattr(self, name)}")
        if self.d_intermediate < 0:
            raise ValueError(f"d_intermediate must be >= 0; got {self.d_intermediate}")
        kinds = [self.mixer] if isinstance(self.mixer, str) else list(self.mixer)
        unknown = [k for k in kinds if k not in MIXER_KINDS]
        if unknown or not kinds:
            raise ValueError(
                f"unknown mixer kind(s) {unknown}; expected a non-empty choice of {', '.join(MIXER_KINDS)}"
            )
        if self.n_layer % len(kinds):
            raise ValueError(f"a mixer pattern of {len(kinds)} layers does not divide n_layer = {self.n_layer}")

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return math.ceil(self.vocab_size / m) * m

    @property
    def mlp_width(self) -> int:
        """The MLP's hidden width: d_intermediate rounded up to a multiple of 128, as mamba_ssm's GatedMLP."""
        return math.ceil(self.d_intermediate / 128) * 128

    def layer_kinds(self) -> list[str]:
        """The mixer kind of each of the n_layer layers."""
        kinds = [self.mixer] if isinstance(self.mixer, str) else list(self.mixer)
        return kinds * (self.n_layer // len(kinds))


def make_mixer(kind: str, config: LMConfig, *, device=None, dtype=None) -> nn.Module:
    """The mixer module of one layer of ``kind``, built from the config's options for that kind."""
    dd = {"device": device, "dtype": dtype}
    d = config.d_model
    if kind == "mamba":
        o = config.mamba
        return Mamba(
            d,
            d_state=o.d_state,
            d_conv=o.d_conv,
            expand=o.expand,
            dt_rank=o.dt_rank,
            conv_bias=o.conv_bias,
            bias=o.bias,
            **dd,
        )
    if kind == "mamba2":
        o = config.mamba2
        return Mamba2(
            d,
            d_state=o.d_state,
            d_conv=o.d_conv,
            expand=o.expand,
            headdim=o.headdim,
            ngroups=o.ngroups,
            D_has_hdim=o.D_has_hdim,
            chunk_size=o.chunk_size,
            conv_bias=o.conv_bias,
            bias=o.bias,
            **dd,
        )
    if kind in ("attention", "swa"):
        from longseq.core.attention import Attention

        o = config.attention
        return Attention(
            d,
            o.num_heads,
            num_heads_kv=o.num_heads_kv,
            head_dim=o.head_dim,
            causal=True,
            window=o.window if kind == "swa" else None,
            qkv_proj_bias=o.qkv_proj_bias,
            out_proj_bias=o.out_proj_bias,
            softmax_scale=o.softmax_scale,
            rotary_emb_dim=o.rotary_emb_dim,
            rotary_emb_base=o.rotary_emb_base,
            rotary_emb_interleaved=o.rotary_emb_interleaved,
            **dd,
        )
    if kind == "hyena":
        from longseq.core.hyena import HyenaOperator

        o = config.hyena
        return HyenaOperator(
            d,
            l_max=o.l_max,
            filter_order=o.filter_order,
            emb_dim=o.emb_dim,
            short_filter_order=o.short_filter_order,
            num_inner_mlps=o.num_inner_mlps,
            activation_freq=o.activation_freq,
            train_freq=o.train_freq,
            modulate=o.modulate,
            shift=o.shift,
            beyond_l_max=o.beyond_l_max,
            **dd,
        )
    raise ValueError(f"unknown mixer kind {kind!r}; expected one of {', '.join(MIXER_KINDS)}")


class Backbone(nn.Module):
    """Embedding -> blocks -> final add + norm (mamba_ssm ``MixerModel``); returns normalised hidden states."""

    def __init__(self, config: LMConfig, *, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        d = config.d_model
        norm_kind = "rms" if config.rms_norm else "layer"
        self.residual_in_fp32 = config.residual_in_fp32
        self.embedding = nn.Embedding(config.padded_vocab_size, d, **dd)
        self.layers = nn.ModuleList()
        for kind in config.layer_kinds():
            with_mlp = config.d_intermediate > 0
            mlp = Mlp(d, config.mlp_width, activation="silu", gated=True, bias=False, **dd) if with_mlp else None
            self.layers.append(
                Block(
                    make_mixer(kind, config, **dd),
                    make_norm(norm_kind, d, eps=config.norm_epsilon, **dd),
                    mlp=mlp,
                    norm2=make_norm(norm_kind, d, eps=config.norm_epsilon, **dd) if with_mlp else None,
                    residual_in_fp32=config.residual_in_fp32,
                )
            )
        self.norm_f = make_norm(norm_kind, d, eps=config.norm_epsilon, **dd)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        states: list[Any] | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (b, l) -> hidden (b, l, d). With states: continue from them and update them.

        ``inputs_embeds`` (b, l, d) replaces the embedding lookup (e.g. image features spliced into the text).
        """
        hidden = self.embedding(input_ids) if inputs_embeds is None else inputs_embeds
        residual = None
        for i, layer in enumerate(self.layers):
            hidden, residual = layer(hidden, residual, state=None if states is None else states[i])
        return add_norm(hidden, residual, self.norm_f, residual_in_fp32=self.residual_in_fp32)[0]

    def step(self, input_ids: torch.Tensor, states: list[Any]) -> torch.Tensor:
        """One token per sequence: input_ids (b,) -> hidden (b, d); the states advance in place."""
        hidden, residual = self.embedding(input_ids), None
        for layer, state in zip(self.layers, states):
            hidden, residual = layer.step(hidden, residual, state)
        return add_norm(hidden, residual, self.norm_f, residual_in_fp32=self.residual_in_fp32)[0]


def _init_weights(module: nn.Module, config: LMConfig) -> None:
    """mamba_ssm's ``_init_weights``: zero Linear biases (except those marked ``_no_reinit``), N(0, range)
    embeddings, and out_proj / fc2 weights (the last matmul of each residual branch) scaled by
    1 / sqrt(branches per layer * n_layer)."""
    if isinstance(module, nn.Linear) and module.bias is not None and not getattr(module.bias, "_no_reinit", False):
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=config.initializer_range)
    if config.rescale_prenorm_residual:
        branches = 1 if config.d_intermediate == 0 else 2
        for name, p in module.named_parameters():
            if name in ("out_proj.weight", "fc2.weight"):
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                with torch.no_grad():
                    p /= math.sqrt(branches * config.n_layer)


class CausalLM(Pretrained, nn.Module):
    """Causal LM: input_ids (b, l) -> logits (b, l, v_padded). See the module docstring for the layout."""

    model_type = "causal_lm"

    def __init__(self, config: LMConfig, *, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.backbone = Backbone(config, device=device, dtype=dtype)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False, device=device, dtype=dtype)
        self.apply(lambda m: _init_weights(m, config))
        if config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight

    def forward(
        self,
        input_ids: torch.Tensor | None,
        states: list[Any] | None = None,
        *,
        num_last_tokens: int = 0,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (b, l) -> logits (b, l, v_padded), or (b, num_last_tokens, v_padded) when that is > 0.

        With ``states`` (from `init_states`): continue from them and update them (a prefill or a chunk).
        ``inputs_embeds`` (b, l, d) is given instead of input_ids (multimodal prefixes).
        """
        hidden = self.backbone(input_ids, states, inputs_embeds=inputs_embeds)
        if num_last_tokens > 0:
            hidden = hidden[:, -num_last_tokens:]
        return self.lm_head(hidden)

    def init_states(self, batch_size: int, *, max_seqlen: int | None = None, device=None, dtype=None) -> list[Any]:
        """One fresh decode state per layer (recurrent states, KV caches)."""
        return [
            layer.mixer.init_state(batch_size, max_seqlen=max_seqlen, device=device, dtype=dtype)
            for layer in self.backbone.layers
        ]

    def step(self, input_ids: torch.Tensor, states: list[Any]) -> torch.Tensor:
        """One token per sequence: input_ids (b,) -> logits (b, v_padded); the states advance in place."""
        return self.lm_head(self.backbone.step(input_ids, states))

    @torch.inference_mode()
    def generate(
        self,
        input_ids: torch.Tensor,
        *,
        max_new_tokens: int,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        eos_token_id: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue ``input_ids`` (b, l) by up to ``max_new_tokens`` tokens -> (b, l + new).

        Greedy unless ``do_sample`` (then temperature, top-k (0 = off) and nucleus top-p (1 = off) sampling, from
        ``generator`` or a fresh one seeded with ``seed``). Sequences that emitted ``eos_token_id`` keep emitting
        it; generation stops early once every sequence has. Only ids below ``vocab_size`` are produced (the
        padding rows of the vocabulary are never chosen). The model's train/eval mode is left as it is.
        """
        vocab = self.config.vocab_size
        _check_generate_args(input_ids, vocab, max_new_tokens, temperature, top_k, top_p, eos_token_id)
        if seed is not None and generator is not None:
            raise InputError("give seed or generator, not both")
        if do_sample and generator is None:
            generator = torch.Generator(device=input_ids.device)
            generator.manual_seed(seed if seed is not None else torch.seed())
        b, l = input_ids.shape
        out = [input_ids]
        if max_new_tokens == 0:
            return input_ids
        states = self.init_states(b, max_seqlen=l + max_new_tokens, device=input_ids.device)
        logits = self(input_ids, states, num_last_tokens=1)[:, -1]
        finished = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
        for i in range(max_new_tokens):
            token = sample_next(
                logits[:, :vocab],
                do_sample=do_sample,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                generator=generator,
            )
            if eos_token_id is not None:
                token = token.masked_fill(finished, eos_token_id)
                finished |= token == eos_token_id
            out.append(token[:, None])
            if i + 1 == max_new_tokens or bool(finished.all()):
                break
            logits = self.step(token, states)
        return torch.cat(out, dim=1)


def _check_generate_args(input_ids, vocab, max_new_tokens, temperature, top_k, top_p, eos_token_id) -> None:
    if input_ids.dim() != 2 or input_ids.shape[1] == 0 or input_ids.is_floating_point():
        raise InputError(f"input_ids must be a non-empty (b, l) integer tensor; got {tuple(input_ids.shape)}")
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
        raise InputError(f"input_ids must lie in [0, {vocab}); got values in [{input_ids.min()}, {input_ids.max()}]")
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0; got {max_new_tokens}")
    if temperature <= 0:
        raise InputError(f"temperature must be positive; got {temperature}")
    if top_k < 0:
        raise InputError(f"top_k must be >= 0 (0 = off); got {top_k}")
    if not 0 < top_p <= 1:
        raise InputError(f"top_p must lie in (0, 1]; got {top_p}")
    if eos_token_id is not None and not 0 <= eos_token_id < vocab:
        raise InputError(f"eos_token_id must lie in [0, {vocab}); got {eos_token_id}")


def sample_next(
    logits: torch.Tensor,
    *,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token from logits (b, v) -> (b,): argmax, or a sample after temperature, top-k, top-p."""
    if not do_sample:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        # Drop a token when the more likely ones already reach top_p (the most likely one always stays).
        drop = probs.cumsum(dim=-1) - probs >= top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# Shapes of the released state-spaces models (random weights here; load real ones with `longseq.from_pretrained`)
# and tiny configs for tests and demos.
PRESETS: dict[str, LMConfig] = {
    "mamba-130m": LMConfig(vocab_size=50277, d_model=768, n_layer=24),
    "mamba-370m": LMConfig(vocab_size=50277, d_model=1024, n_layer=48),
    "mamba-790m": LMConfig(vocab_size=50277, d_model=1536, n_layer=48),
    "mamba-1.4b": LMConfig(vocab_size=50277, d_model=2048, n_layer=48),
    "mamba-2.8b": LMConfig(vocab_size=50277, d_model=2560, n_layer=64),
    "mamba2-130m": LMConfig(vocab_size=50277, d_model=768, n_layer=24, mixer="mamba2", pad_vocab_size_multiple=16),
    "mamba2-370m": LMConfig(vocab_size=50277, d_model=1024, n_layer=48, mixer="mamba2", pad_vocab_size_multiple=16),
    "mamba2-780m": LMConfig(vocab_size=50277, d_model=1536, n_layer=48, mixer="mamba2", pad_vocab_size_multiple=16),
    "mamba2-1.3b": LMConfig(vocab_size=50277, d_model=2048, n_layer=48, mixer="mamba2", pad_vocab_size_multiple=16),
    "mamba2-2.7b": LMConfig(vocab_size=50277, d_model=2560, n_layer=64, mixer="mamba2", pad_vocab_size_multiple=16),
    "mamba-tiny": LMConfig(vocab_size=256, d_model=64, n_layer=2),
    "mamba2-tiny": LMConfig(
        vocab_size=256,
        d_model=64,
        n_layer=2,
        mixer="mamba2",
        mamba2=Mamba2Options(d_state=16, headdim=16, chunk_size=32),
    ),
    "hybrid-tiny": LMConfig(
        vocab_size=256,
        d_model=64,
        n_layer=2,
        mixer=["mamba", "swa"],
        attention=AttentionOptions(num_heads=4, window=64, rotary_emb_dim=16),
    ),
}
