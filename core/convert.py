"""Load Mamba language-model checkpoints into `core.lm.CausalLM`: our format, state-spaces and Hugging Face.

Three directory layouts are recognised from ``config.json``:

- ours: ``model_type`` "causal_lm" + ``model.safetensors`` (`CausalLM.save_pretrained`).
- state-spaces ``MambaLMHeadModel`` (mamba_ssm): ``d_model``, ``n_layer``, ``ssm_cfg`` (``layer`` Mamba1 or
  Mamba2), optional ``attn_layer_idx`` / ``attn_cfg`` / ``d_intermediate``; weights ``pytorch_model.bin``
  (or ``model.safetensors``). Keys are ours already; ``lm_head.weight`` is stored even when tied.
- Hugging Face ``MambaForCausalLM`` (``model_type`` "mamba"): ``hidden_size``, ``state_size``, ...; weights
  ``model.safetensors`` (possibly sharded with an index). The embedding is ``backbone.embeddings``; a tied
  head is omitted.

Each layout has an explicit key map from our parameter names to the file's; a file key the map does not
produce, or a key it lacks, raises a one-line `CheckpointError` naming it, and the result loads strictly.
Weights are read by `core.checkpoint.load_tensors` (safetensors, or a restricted unpickler): no code runs.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from longseq.core.checkpoint import CheckpointError, format_keys, load_strict, load_tensors, read_config
from longseq.core.lm import MODEL_TYPE, PRESETS, AttentionOptions, CausalLM, LMConfig, Mamba2Options, MambaOptions

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


def from_pretrained(name_or_path: str | os.PathLike) -> CausalLM:
    """Load a causal LM from a preset name or a checkpoint directory in any supported layout (module docstring).

    Raises:
        CheckpointError: a missing directory or file, an unknown layout, an unsupported option, keys that do
            not match, or weights that do not fit the config (one line naming the problem).
    """
    if str(name_or_path) in PRESETS:
        return CausalLM.from_pretrained(str(name_or_path))
    directory = Path(name_or_path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a checkpoint directory or a preset ({', '.join(sorted(PRESETS))})")
    values = read_config(directory)
    source = str(directory)
    if values.get("model_type") == MODEL_TYPE:
        return CausalLM.from_pretrained(directory)
    if values.get("model_type") == "mamba":
        config = config_from_hf(values, source)
        tensors = _read_weights(directory, ("model.safetensors", "pytorch_model.bin"))
        return _load(config, tensors, hf_key_map, source)
    if "model_type" not in values and "d_model" in values and "n_layer" in values:
        config = config_from_state_spaces(values, source)
        tensors = _read_weights(directory, ("model.safetensors", "pytorch_model.bin"))
        return _load(config, tensors, state_spaces_key_map, source)
    kind = values.get("model_type", "unknown")
    if kind == "mamba2":
        raise CheckpointError(f"{directory}: Hugging Face Mamba2ForCausalLM checkpoints are not supported yet")
    raise CheckpointError(
        f"{directory} is not a Mamba language model checkpoint (model_type {kind!r}); expected our format, "
        "a state-spaces MambaLMHeadModel or a Hugging Face MambaForCausalLM directory"
    )


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


def state_spaces_key_map(ours: str) -> str:
    """Our parameter name -> its name in a state-spaces ``MambaLMHeadModel`` file (the same)."""
    return ours


def hf_key_map(ours: str) -> str:
    """Our parameter name -> its name in a transformers ``MambaForCausalLM`` file."""
    if ours == "backbone.embedding.weight":
        return "backbone.embeddings.weight"
    return ours


def _load(config: LMConfig, tensors: dict[str, torch.Tensor], key_map: Callable[[str], str], source: str) -> CausalLM:
    try:
        model = CausalLM(config).eval()
    except ValueError as err:
        raise CheckpointError(f"{source}: the config does not describe a valid model: {err}") from None
    wanted = {key_map(k): k for k in model.state_dict()}
    tied_head = key_map("lm_head.weight")
    if config.tie_embeddings:
        # The head is the embedding: a file may omit it (transformers) or store a copy (mamba_ssm).
        wanted.pop(tied_head)
        head = tensors.pop(tied_head, None)
        embedding = tensors.get(key_map("backbone.embedding.weight"))
        if head is not None and embedding is not None and not torch.equal(head, embedding):
            raise CheckpointError(f"{source}: {tied_head} differs from the embedding although the config ties them")
    unmapped = sorted(set(tensors) - set(wanted))
    missing = sorted(set(wanted) - set(tensors))
    if unmapped or missing:
        problems = [
            f"{label} {format_keys(keys)}" for label, keys in (("missing", missing), ("unexpected", unmapped)) if keys
        ]
        raise CheckpointError(f"{source} does not fit a {_describe(config)}: " + "; ".join(problems))
    state = {ours: tensors[theirs] for theirs, ours in wanted.items()}
    if config.tie_embeddings:
        state["lm_head.weight"] = state["backbone.embedding.weight"]
    return load_strict(model, state, source)


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
