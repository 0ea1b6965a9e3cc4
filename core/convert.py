"""The causal LM family (`core.lm.CausalLM`) and the official Mamba layouts it reads.

Besides our format (``model_type`` "causal_lm"), two directory layouts are recognised from ``config.json``:

- state-spaces ``MambaLMHeadModel`` (mamba_ssm): ``d_model``, ``n_layer``, ``ssm_cfg`` (``layer`` Mamba1 or
  Mamba2), optional ``attn_layer_idx`` / ``attn_cfg`` / ``d_intermediate``; weights ``pytorch_model.bin``
  (or ``model.safetensors``). Keys are ours already; ``lm_head.weight`` is stored even when tied.
- Hugging Face ``MambaForCausalLM`` (``model_type`` "mamba"): ``hidden_size``, ``state_size``, ...; weights
  ``model.safetensors`` (possibly sharded with an index). The embedding is ``backbone.embeddings``; a tied
  head is omitted.

Each layout has an explicit `KeyMap`; a file key it does not map, or a key the model lacks, raises a one-line
`CheckpointError` naming it, and the result loads strictly.
Weights are read by `core.checkpoint.load_tensors` (safetensors, or a restricted unpickler): no code runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from longseq.core.checkpoint import CheckpointError, format_keys, load_tensors
from longseq.core.keymap import KeyMap
from longseq.core.lm import PRESETS, AttentionOptions, CausalLM, LMConfig, Mamba2Options, MambaOptions
from longseq.core.registry import Family, Layout, Source

# mamba_ssm module options (ssm_cfg, attn_cfg), per mixer kind, by what they mean for a loaded model:
# architecture options map to our option fields of the same name; init-only options set the random init or
# pick kernels (no effect on outputs); fixed options change the computation in ways we do not implement and
# are accepted only at their default value. Anything else is refused.
_ARCHITECTURE = {
    "mamba": {"d_state", "d_conv", "expand", "dt_rank", "conv_bias", "bias"},
    "mamba2": {"d_state", "d_conv", "expand", "headdim", "ngroups", "D_has_hdim", "chunk_size", "conv_bias", "bias"},
    "attention": {
        "num_heads",
        "num_heads_kv",
        "head_dim",
        "qkv_proj_bias",
        "out_proj_bias",
        "softmax_scale",
        "rotary_emb_dim",
        "rotary_emb_base",
        "rotary_emb_interleaved",
    },
}
_INIT_ONLY = {
    "mamba": {"dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor", "use_fast_path", "layer_idx"},
    "mamba2": {"conv_init", "A_init_range", "dt_min", "dt_max", "dt_init_floor", "use_mem_eff_path", "layer_idx"},
    "attention": {"layer_idx"},
}
_FIXED = {
    "mamba": {},
    "mamba2": {"d_ssm": None, "rmsnorm": True, "norm_before_gate": False, "dt_limit": [0.0, math.inf]},
    "attention": {"causal": True, "mlp_dim": 0, "d_conv": 0},
}


def config_from_state_spaces(values: Mapping[str, Any], source: str) -> LMConfig:
    """mamba_ssm ``MambaConfig`` fields -> `LMConfig`."""
    _require(values, ("d_model", "n_layer"), source)
    known = {"d_model", "d_intermediate", "n_layer", "vocab_size", "ssm_cfg", "attn_layer_idx", "attn_cfg"}
    known |= {"rms_norm", "residual_in_fp32", "fused_add_norm", "pad_vocab_size_multiple", "tie_embeddings"}
    _reject_unknown(values, known, "config", source)
    ssm_cfg = dict(values.get("ssm_cfg") or {})
    layer = ssm_cfg.pop("layer", "Mamba1")
    if layer not in ("Mamba1", "Mamba2"):
        raise CheckpointError(f"{source}: ssm_cfg.layer {layer!r} is not supported (Mamba1 or Mamba2)")
    kind = "mamba" if layer == "Mamba1" else "mamba2"
    options_cls = MambaOptions if kind == "mamba" else Mamba2Options
    options = _options(options_cls, ssm_cfg, kind, "ssm_cfg", source)
    n_layer = values["n_layer"]
    attn_idx = list(values.get("attn_layer_idx") or [])
    if any(not isinstance(i, int) or not 0 <= i < n_layer for i in attn_idx):
        raise CheckpointError(f"{source}: attn_layer_idx {attn_idx} must list layers in [0, {n_layer})")
    mixer = [("attention" if i in attn_idx else kind) for i in range(n_layer)]
    attention = _options(AttentionOptions, values.get("attn_cfg") or {}, "attention", "attn_cfg", source)
    return _make_config(
        source,
        vocab_size=values.get("vocab_size", 50277),
        d_model=values["d_model"],
        n_layer=n_layer,
        mixer=mixer if attn_idx else kind,
        d_intermediate=values.get("d_intermediate", 0),
        pad_vocab_size_multiple=values.get("pad_vocab_size_multiple", 8),
        rms_norm=values.get("rms_norm", True),
        residual_in_fp32=values.get("residual_in_fp32", True),
        tie_embeddings=values.get("tie_embeddings", True),
        **{kind: options},
        attention=attention,
    )


def config_from_hf(values: Mapping[str, Any], source: str) -> LMConfig:
    """transformers ``MambaConfig`` fields -> `LMConfig` (transformers stores the vocabulary already padded)."""
    _require(values, ("hidden_size", "num_hidden_layers", "vocab_size"), source)
    if values.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"{source}: hidden_act {values['hidden_act']!r} is not supported (silu)")
    d_model, expand = values["hidden_size"], values.get("expand", 2)
    if values.get("intermediate_size", expand * d_model) != expand * d_model:
        raise CheckpointError(f"{source}: intermediate_size {values['intermediate_size']} != expand * hidden_size")
    dt_rank = values.get("time_step_rank", "auto")
    mamba = MambaOptions(
        d_state=values.get("state_size", 16),
        d_conv=values.get("conv_kernel", 4),
        expand=expand,
        dt_rank=dt_rank,
        conv_bias=values.get("use_conv_bias", True),
        bias=values.get("use_bias", False),
    )
    return _make_config(
        source,
        vocab_size=values["vocab_size"],
        d_model=d_model,
        n_layer=values["num_hidden_layers"],
        pad_vocab_size_multiple=1,
        norm_epsilon=values.get("layer_norm_epsilon", 1e-5),
        residual_in_fp32=values.get("residual_in_fp32", True),
        tie_embeddings=values.get("tie_word_embeddings", True),
        mamba=mamba,
    )


# mamba_ssm's names are ours; transformers renames the embedding. A tied head may be stored (mamba_ssm) or
# omitted (transformers); a stored one must equal the embedding.
_TIED = {"lm_head.weight": "backbone.embedding.weight"}
STATE_SPACES_KEYS = KeyMap(rules=[(r"(.+)", r"\1")], tied=_TIED)
HF_KEYS = KeyMap(rules=[(r"backbone\.embeddings\.weight", "backbone.embedding.weight"), (r"(.+)", r"\1")], tied=_TIED)


def load_state_spaces(source: Source) -> CausalLM:
    """A state-spaces ``MambaLMHeadModel`` directory."""
    config = config_from_state_spaces(source.config, str(source))
    tensors = _read_weights(source.path, ("model.safetensors", "pytorch_model.bin"))
    return _load(config, tensors, STATE_SPACES_KEYS, source)


def load_hf(source: Source) -> CausalLM:
    """A transformers ``MambaForCausalLM`` directory."""
    config = config_from_hf(source.config, str(source))
    tensors = _read_weights(source.path, ("model.safetensors", "pytorch_model.bin"))
    return _load(config, tensors, HF_KEYS, source)


def _load(config: LMConfig, tensors: dict[str, torch.Tensor], keys: KeyMap, source: Source) -> CausalLM:
    try:
        model = CausalLM(config)
    except ValueError as err:
        raise CheckpointError(f"{source}: the config does not describe a valid model: {err}") from None
    if not config.tie_embeddings:
        keys = KeyMap(rules=keys.rules)
    try:
        return keys.load(model, tensors, str(source))
    except CheckpointError as err:
        raise CheckpointError(f"{err} (a {_describe(config)})") from None


FAMILY = Family(
    model_class=CausalLM,
    config_class=LMConfig,
    presets=PRESETS,
    example=lambda model: (torch.randint(0, model.config.vocab_size, (2, 11)),),
    layouts=(
        Layout("mamba-hf", lambda source: source.config.get("model_type") == "mamba", load_hf),
        Layout(
            "mamba-state-spaces",
            lambda source: (
                "model_type" not in source.config
                and {"d_model", "n_layer"} <= source.config.keys()
                and "layer" not in source.config
            ),  # HyenaDNA's original config nests its layer options there
            load_state_spaces,
        ),
    ),
)


def _read_weights(directory: Path, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The first of ``names`` present in ``directory`` (or its sharded form with a ``.index.json``)."""
    for name in names:
        if (directory / name).is_file():
            return load_tensors(directory / name)
        index = directory / f"{name}.index.json"
        if index.is_file():
            return _read_shards(index)
    raise CheckpointError(f"no weights in {directory}: expected {' or '.join(names)} (or a sharded .index.json)")


def _read_shards(index: Path) -> dict[str, torch.Tensor]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{index} is not a valid shard index: {err}") from None
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        tensors.update(load_tensors(index.parent / shard))
    absent = sorted(set(weight_map) - set(tensors))
    if absent:
        raise CheckpointError(f"{index} lists tensors its shards do not hold: {format_keys(absent)}")
    return tensors


def _options(cls: type, values: Mapping[str, Any], kind: str, where: str, source: str):
    """Build a mixer options dataclass from a mamba_ssm kwargs dict, refusing what we cannot honour."""
    _reject_unknown(values, _ARCHITECTURE[kind] | _INIT_ONLY[kind] | set(_FIXED[kind]), where, source)
    for name, default in _FIXED[kind].items():
        value = values.get(name, default)
        if (list(value) if isinstance(value, (list, tuple)) else value) != default:
            raise CheckpointError(f"{source}: {where}.{name} = {value!r} is not supported (only {default!r})")
    try:
        return cls(**{k: v for k, v in values.items() if k in _ARCHITECTURE[kind]})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid {where}: {err}") from None


def _require(values: Mapping[str, Any], names: tuple[str, ...], source: str) -> None:
    absent = [name for name in names if name not in values]
    if absent:
        raise CheckpointError(f"{source}: config.json lacks {', '.join(absent)}")


def _reject_unknown(values: Mapping[str, Any], known: set[str], where: str, source: str) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(f"{source}: {where} has options this loader does not know: {', '.join(unknown)}")


def _make_config(source: str, **kwargs) -> LMConfig:
    try:
        return LMConfig(**kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid config: {err}") from None


def _describe(config: LMConfig) -> str:
    kinds = sorted(set(config.layer_kinds()))
    return f"{'/'.join(kinds)} LM with d_model {config.d_model} and {config.n_layer} layers"
