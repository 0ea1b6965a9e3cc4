"""Official HyenaDNA and Caduceus checkpoints -> our models, by explicit key maps and small named transforms.

`from_pretrained(path)` recognises, from the directory's ``config.json``:

- a HyenaDNA Hugging Face directory (``LongSafari/hyenadna-*-seqlen-hf``): flat config with ``hyena_order``;
  ``model.safetensors`` or ``pytorch_model.bin`` with keys ``hyena.backbone.*`` and a separate ``lm_head.weight``;
- an original HyenaDNA directory (``LongSafari/hyenadna-*-seqlen``): nested config with ``layer``; a Lightning
  ``weights.ckpt`` (keys ``model.backbone.*``, ``model.lm_head.weight`` tied to the embedding; models trained
  with gradient checkpointing have ``.mixer.layer.`` / ``.mlp.layer.``), read without omegaconf and without
  running code (`core.checkpoint.load_pickle`);
- a Caduceus Hugging Face directory (``kuleshov-group/caduceus-{ps,ph}_*``): ``model_type`` "caduceus" with ``ssm_cfg``;
- our format (``model_type`` "hyenadna" or "caduceus" and our config fields).

Every source key must be mapped (or explicitly dropped after a check), every model key must be filled, and the
result loads with ``strict=True``; otherwise a `CheckpointError` names the keys.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from longseq.core.checkpoint import (
    CheckpointError,
    load_pickle,
    load_strict,
    load_tensors,
)
from longseq.core.registry import Family, Layout
from longseq.genomics.data.tokenizer import COMPLEMENT
from longseq.genomics.models import PRESETS
from longseq.genomics.models.caduceus import Caduceus, CaduceusConfig
from longseq.genomics.models.hyenadna import HyenaDNA, HyenaDNAConfig

# The HyenaOperator's keys, identical upstream and here (core.hyena keeps HyenaDNA's names).
_HYENA_MIXER_KEYS = (
    "in_proj.weight",
    "in_proj.bias",
    "short_filter.weight",
    "short_filter.bias",
    "out_proj.weight",
    "out_proj.bias",
    "filter_fn.bias",
    "filter_fn.pos_emb.z",
    "filter_fn.pos_emb.t",
    "filter_fn.implicit_filter.0.weight",
    "filter_fn.implicit_filter.0.bias",
    "filter_fn.implicit_filter.1.freq",
    "filter_fn.implicit_filter.2.weight",
    "filter_fn.implicit_filter.2.bias",
    "filter_fn.implicit_filter.4.weight",
    "filter_fn.implicit_filter.4.bias",
    "filter_fn.implicit_filter.6.weight",
    "filter_fn.modulation.deltas",
)
# The Sin module is shared by positions 1, 3 and 5 of the filter MLP: one tensor under three names.
_FREQ_ALIASES = ("filter_fn.implicit_filter.3.freq", "filter_fn.implicit_filter.5.freq")

# HF layout (``hyena.backbone.``); the original layout is the same under ``model.backbone.`` (see below).
HYENADNA_HF_KEY_MAP: dict[str, str | None] = {
    "hyena.backbone.embeddings.word_embeddings.weight": "embedding.weight",
    **{f"hyena.backbone.layers.{{}}.mixer.{k}": f"layers.{{}}.mixer.{k}" for k in _HYENA_MIXER_KEYS},
    **{f"hyena.backbone.layers.{{}}.mixer.{k}": None for k in _FREQ_ALIASES},  # checked by _check_freq_aliases
    "hyena.backbone.layers.{}.norm1.weight": "layers.{}.norm.weight",
    "hyena.backbone.layers.{}.norm1.bias": "layers.{}.norm.bias",
    "hyena.backbone.layers.{}.norm2.weight": "layers.{}.norm2.weight",
    "hyena.backbone.layers.{}.norm2.bias": "layers.{}.norm2.bias",
    "hyena.backbone.layers.{}.mlp.fc1.weight": "layers.{}.mlp.fc1.weight",
    "hyena.backbone.layers.{}.mlp.fc1.bias": "layers.{}.mlp.fc1.bias",
    "hyena.backbone.layers.{}.mlp.fc2.weight": "layers.{}.mlp.fc2.weight",
    "hyena.backbone.layers.{}.mlp.fc2.bias": "layers.{}.mlp.fc2.bias",
    "hyena.backbone.ln_f.weight": "ln_f.weight",
    "hyena.backbone.ln_f.bias": "ln_f.bias",
    "lm_head.weight": "lm_head.weight",
}
HYENADNA_ORIGINAL_KEY_MAP: dict[str, str | None] = {
    "model." + k.removeprefix("hyena."): v for k, v in HYENADNA_HF_KEY_MAP.items()
}

# Fields of the HF HyenaConfig that only describe training or HF bookkeeping.
_HF_HYENA_IGNORED = {
    "hyena_filter_dropout",  # never applied upstream ("filter_dropout is not implemented")
    "pad_token_id",
    "model_type",
    "architectures",
    "auto_map",
    "torch_dtype",
    "transformers_version",
}
# Fields of the original (Hydra) config that only change speed, memory or the optimiser.
_ORIGINAL_IGNORED = {"fused_mlp", "fused_dropout_add_ln", "checkpoint_mixer", "checkpoint_mlp", "process_group"}
_ORIGINAL_LAYER_IGNORED = {"_name_", "lr", "wd", "lr_pos_emb", "fused_fft_conv", "l_max", "local_order", "w"}


def _layer_pattern(key: str) -> tuple[str, str | None]:
    """``...layers.3.mixer...`` -> (``...layers.{}.mixer...``, "3")."""
    found = re.search(r"\.layers\.(\d+)\.", key)
    if not found:
        return key, None
    return key[: found.start()] + ".layers.{}." + key[found.end() :], found.group(1)


def map_keys(state: Mapping[str, torch.Tensor], key_map: Mapping[str, str | None], source: str) -> dict:
    """Rename ``state`` by ``key_map`` (``{}`` stands for a layer index; None drops the key).

    Raises:
        CheckpointError: naming the first keys the map does not know.
    """
    out, unknown = {}, []
    for key, tensor in state.items():
        pattern, index = _layer_pattern(key)
        if pattern not in key_map:
            unknown.append(key)
            continue
        target = key_map[pattern]
        if target is not None:
            out[target.format(index)] = tensor
    if unknown:
        more = f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else ""
        raise CheckpointError(f"{source}: unexpected keys {', '.join(unknown[:3])}{more}")
    return out


def _check_freq_aliases(state: Mapping[str, torch.Tensor], prefix: str, n_layer: int, source: str) -> None:
    """Where a file stores the shared Sin frequency under all three names, they must agree."""
    for i in range(n_layer):
        first = state.get(f"{prefix}layers.{i}.mixer.filter_fn.implicit_filter.1.freq")
        for alias in _FREQ_ALIASES:
            other = state.get(f"{prefix}layers.{i}.mixer.{alias}")
            if other is not None and first is not None and not torch.equal(first, other):
                raise CheckpointError(f"{source}: layer {i} has different {alias} and implicit_filter.1.freq")


def _strip_checkpoint_wrappers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Models trained with ``checkpoint_mixer/mlp`` store ``.mixer.layer.`` / ``.mlp.layer.``: drop the wrapper."""
    return {re.sub(r"\.(mixer|mlp)\.layer\.", r".\1.", k): v for k, v in state.items()}


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Fill tied aliases (the model's own shared tensors) and load strictly."""
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            alias = next((k for k, v in own.items() if k in state and v.data_ptr() == value.data_ptr()), None)
            if alias is not None:
                state[key] = state[alias]
    return load_strict(model, state, source).eval()


def _hyenadna_config(values: Mapping[str, Any], source: str, **overrides) -> HyenaDNAConfig:
    try:
        return HyenaDNAConfig(**values, **overrides)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid HyenaDNA config: {err}") from None


def hyenadna_config_from_hf(config: Mapping[str, Any], source: str, *, filter_shift: float = 0.05) -> HyenaDNAConfig:
    """The HF ``HyenaConfig`` fields -> `HyenaDNAConfig` (``tie_word_embeddings`` decided from the weights)."""
    if config.get("hyena_order", 2) != 2:
        raise CheckpointError(f"{source}: hyena_order {config['hyena_order']} is not supported (only 2 was released)")
    if not config.get("use_bias", True):
        raise CheckpointError(f"{source}: use_bias=false is not supported (every release uses the filter bias)")
    names = {f.name for f in dataclasses.fields(HyenaDNAConfig)}
    values = {k: v for k, v in config.items() if k in names and k != "tie_word_embeddings"}
    return _hyenadna_config(values, source, filter_shift=filter_shift)


def hyenadna_config_from_original(
    config: Mapping[str, Any], source: str, *, filter_shift: float = 0.05
) -> HyenaDNAConfig:
    """The original nested (Hydra) config -> `HyenaDNAConfig`."""
    layer = config.get("layer")
    if not isinstance(layer, Mapping) or layer.get("_name_", "hyena") != "hyena":
        name = layer.get("_name_") if isinstance(layer, Mapping) else None
        raise CheckpointError(f"{source}: layer {name!r} is not a Hyena layer")
    if config.get("attn_layer_idx"):
        raise CheckpointError(f"{source}: attention layers (attn_layer_idx) are not supported")
    top = {"d_model", "n_layer", "d_inner", "vocab_size", "resid_dropout", "embed_dropout", "layer_norm_epsilon"}
    top |= {"pad_vocab_size_multiple", "residual_in_fp32"}
    unknown = sorted(set(config) - top - _ORIGINAL_IGNORED - {"layer", "attn_layer_idx", "attn_cfg"})
    layer_known = {"emb_dim", "filter_order", "modulate", "train_freq", "num_inner_mlps", "order"}
    unknown += sorted(f"layer.{k}" for k in set(layer) - layer_known - _ORIGINAL_LAYER_IGNORED)
    if unknown:
        raise CheckpointError(f"{source}: unknown HyenaDNA config fields {', '.join(unknown)}")
    if layer.get("order", 2) != 2:
        raise CheckpointError(f"{source}: Hyena order {layer['order']} is not supported (only 2 was released)")
    values = {k: config[k] for k in top if k in config}
    values.update(
        {k: layer[k] for k in ("emb_dim", "filter_order", "modulate", "train_freq", "num_inner_mlps") if k in layer}
    )
    if "l_max" not in layer:
        raise CheckpointError(f"{source}: layer.l_max is missing")
    values["max_seq_len"] = layer["l_max"]
    values["short_filter_order"] = layer.get("local_order", 3)
    values["activation_freq"] = layer.get("w", 10)
    return _hyenadna_config(values, source, filter_shift=filter_shift)


def load_hyenadna_hf(directory: Path, config: Mapping[str, Any], *, filter_shift: float = 0.05) -> HyenaDNA:
    """A ``LongSafari/hyenadna-*-seqlen-hf`` directory."""
    weights = directory / "model.safetensors"
    if not weights.is_file():
        weights = directory / "pytorch_model.bin"
    if not weights.is_file():
        raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin next to config.json")
    source = str(weights)
    cfg = hyenadna_config_from_hf(config, str(directory / "config.json"), filter_shift=filter_shift)
    state = load_tensors(weights)
    _check_freq_aliases(state, "hyena.backbone.", cfg.n_layer, source)
    state = map_keys(state, HYENADNA_HF_KEY_MAP, source)
    tied = "lm_head.weight" not in state
    model = HyenaDNA(dataclasses.replace(cfg, tie_word_embeddings=tied))
    return _load_into(model, state, source)


def load_hyenadna_original(directory: Path, config: Mapping[str, Any], *, filter_shift: float = 0.05) -> HyenaDNA:
    """A ``LongSafari/hyenadna-*-seqlen`` directory: nested ``config.json`` + Lightning ``weights.ckpt``."""
    weights = directory / "weights.ckpt"
    cfg = hyenadna_config_from_original(config, str(directory / "config.json"), filter_shift=filter_shift)
    checkpoint = load_pickle(weights)
    state = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{weights} is not a Lightning checkpoint (no state_dict)")
    state = _strip_checkpoint_wrappers(state)
    _check_freq_aliases(state, "model.backbone.", cfg.n_layer, str(weights))
    state = map_keys(state, HYENADNA_ORIGINAL_KEY_MAP, str(weights))
    head, embedding = state.get("lm_head.weight"), state.get("embedding.weight")
    tied = head is None or (embedding is not None and torch.equal(head, embedding))
    if tied:
        state.pop("lm_head.weight", None)
    model = HyenaDNA(dataclasses.replace(cfg, tie_word_embeddings=tied))
    return _load_into(model, state, str(weights))


_MAMBA_KEYS = (
    "in_proj.weight",
    "in_proj.bias",
    "conv1d.weight",
    "conv1d.bias",
    "x_proj.weight",
    "dt_proj.weight",
    "dt_proj.bias",
    "A_log",
    "D",
    "out_proj.weight",
    "out_proj.bias",
)
# mamba_rev's projections are tied to mamba_fwd's: absent from the released files, checked when present.
_TIED_REV = ("in_proj.weight", "in_proj.bias", "out_proj.weight", "out_proj.bias")


def _caduceus_key_map(rcps: bool) -> dict[str, str | None]:
    """Caduceus HF keys -> ours. PS wraps the mixer (``mixer.submodule.``) and the embedding (``.embedding``)."""
    mixer = "caduceus.backbone.layers.{}.mixer." + ("submodule." if rcps else "")
    embedding = "caduceus.backbone.embeddings.word_embeddings" + (".embedding" if rcps else "")
    key_map: dict[str, str | None] = {
        f"{embedding}.weight": "embedding.weight",
        **{f"{mixer}mamba_fwd.{k}": f"layers.{{}}.mixer.mamba_fwd.{k}" for k in _MAMBA_KEYS},
        **{f"{mixer}mamba_rev.{k}": f"layers.{{}}.mixer.mamba_rev.{k}" for k in _MAMBA_KEYS if k not in _TIED_REV},
        **{f"{mixer}mamba_rev.{k}": None for k in _TIED_REV},  # checked by _check_tied
        "caduceus.backbone.layers.{}.norm.weight": "layers.{}.norm.weight",
        "caduceus.backbone.layers.{}.norm.bias": "layers.{}.norm.bias",
        "caduceus.backbone.norm_f.weight": "norm_f.weight",
        "caduceus.backbone.norm_f.bias": "norm_f.bias",
    }
    if rcps:  # the complement tables are rebuilt from the vocabulary, checked by _check_complement
        key_map["caduceus.backbone.embeddings.word_embeddings.complement_map"] = None
        key_map["lm_head.complement_map"] = None
        key_map["lm_head.lm_head.weight"] = None  # tied to the embedding, checked by _check_tied
    else:
        key_map["lm_head.weight"] = None
    return key_map


def _check_tied(state: Mapping[str, torch.Tensor], pairs: list[tuple[str, str]], source: str) -> None:
    """Keys stored for tied tensors must hold the same values as the tensor they are tied to."""
    for alias, target in pairs:
        if alias in state and target in state and not torch.equal(state[alias], state[target]):
            raise CheckpointError(f"{source}: {alias} differs from {target}; untied weights are not supported")


def _check_complement(state: Mapping[str, torch.Tensor], expected: torch.Tensor, source: str) -> None:
    for key in ("caduceus.backbone.embeddings.word_embeddings.complement_map", "lm_head.complement_map"):
        if key in state and not torch.equal(state[key].long(), expected):
            raise CheckpointError(f"{source}: {key} is not the A<->T, C<->G complement of the DNA vocabulary")


def caduceus_config_from_hf(config: Mapping[str, Any], source: str, *, max_seq_len: int | None) -> CaduceusConfig:
    """The HF ``CaduceusConfig`` (with its nested ``ssm_cfg`` and ``initializer_cfg``) -> `CaduceusConfig`."""
    names = {f.name for f in dataclasses.fields(CaduceusConfig)}
    values = {k: v for k, v in config.items() if k in names}
    ssm = dict(config.get("ssm_cfg") or {})
    ssm.pop("use_fast_path", None)  # a CUDA kernel switch
    unknown = sorted(set(ssm) - names)
    if unknown:
        raise CheckpointError(f"{source}: unknown ssm_cfg fields {', '.join(unknown)}")
    values.update(ssm)
    values.update({k: v for k, v in (config.get("initializer_cfg") or {}).items() if k in names})
    complement = config.get("complement_map")
    if complement is not None:
        table = {int(k): int(v) for k, v in complement.items()}
        if any(table.get(i, i) != c for i, c in enumerate(COMPLEMENT)):
            raise CheckpointError(f"{source}: complement_map is not the A<->T, C<->G complement of the DNA vocabulary")
    try:
        return CaduceusConfig(**values, max_seq_len=max_seq_len)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid Caduceus config: {err}") from None


def _seqlen_from_name(directory: Path) -> int | None:
    """The released directories are named ``caduceus-ps_seqlen-131k_...``: the training length, when named."""
    found = re.search(r"seqlen-(\d+)(k?)", directory.name)
    if not found:
        return None
    return int(found.group(1)) * (1024 if found.group(2) else 1)


def load_caduceus_hf(directory: Path, config: Mapping[str, Any]) -> Caduceus:
    """A ``kuleshov-group/caduceus-{ps,ph}_*`` directory (``model.safetensors`` or ``pytorch_model.bin``)."""
    weights = directory / "model.safetensors"
    if not weights.is_file():
        weights = directory / "pytorch_model.bin"
    if not weights.is_file():
        raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin next to config.json")
    source = str(weights)
    cfg = caduceus_config_from_hf(config, str(directory / "config.json"), max_seq_len=_seqlen_from_name(directory))
    state = load_tensors(weights)
    model = Caduceus(cfg)
    _check_complement(state, model.complement, source)
    mixer = "caduceus.backbone.layers.{}.mixer." + ("submodule." if cfg.rcps else "")
    embedding = "caduceus.backbone.embeddings.word_embeddings" + (".embedding.weight" if cfg.rcps else ".weight")
    pairs = [("lm_head.lm_head.weight" if cfg.rcps else "lm_head.weight", embedding)]
    for i in range(cfg.n_layer):
        pairs += [(f"{mixer}mamba_rev.{k}".format(i), f"{mixer}mamba_fwd.{k}".format(i)) for k in _TIED_REV]
    _check_tied(state, pairs, source)
    return _load_into(model, map_keys(state, _caduceus_key_map(cfg.rcps), source), source)


def _hyenadna_layout(config: Mapping[str, Any] | None) -> str | None:
    if config is None:
        return None
    if isinstance(config.get("layer"), Mapping):
        return "hyenadna-original"
    if config.get("model_type") == "hyenadna" and "hyena_order" in config:
        return "hyenadna-hf"
    return None


HYENADNA = Family(
    model_class=HyenaDNA,
    config_class=HyenaDNAConfig,
    presets={name: config for name, config in PRESETS.items() if isinstance(config, HyenaDNAConfig)},
    layouts=(
        Layout(
            "hyenadna-hf",
            lambda source: _hyenadna_layout(source.config) == "hyenadna-hf",
            lambda source, **options: load_hyenadna_hf(source.path, source.config, **options),
            overrides=("filter_shift",),
        ),
        Layout(
            "hyenadna-original",
            lambda source: _hyenadna_layout(source.config) == "hyenadna-original",
            lambda source, **options: load_hyenadna_original(source.path, source.config, **options),
            overrides=("filter_shift",),
        ),
    ),
)
CADUCEUS = Family(
    model_class=Caduceus,
    config_class=CaduceusConfig,
    presets={name: config for name, config in PRESETS.items() if isinstance(config, CaduceusConfig)},
    layouts=(
        Layout(
            "caduceus-hf",
            lambda source: source.config.get("model_type") == "caduceus" and "ssm_cfg" in source.config,
            lambda source: load_caduceus_hf(source.path, source.config),
        ),
    ),
)
