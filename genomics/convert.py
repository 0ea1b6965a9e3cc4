"""The HyenaDNA and Caduceus families (`HYENADNA`, `CADUCEUS`) and the official checkpoint layouts they read.

``longseq.from_pretrained(path)`` recognises:

- ``hyenadna-hf``: a ``LongSafari/hyenadna-*-seqlen-hf`` directory: flat ``config.json`` with ``hyena_order``;
  ``model.safetensors`` or ``pytorch_model.bin`` with keys ``hyena.backbone.*`` and a separate ``lm_head.weight``;
- ``hyenadna-original``: a ``LongSafari/hyenadna-*-seqlen`` directory: nested ``config.json`` (with ``layer``) and
  a Lightning ``weights.ckpt`` (keys ``model.backbone.*``, ``model.lm_head.weight`` tied to the embedding; models
  trained with gradient checkpointing have ``.mixer.layer.`` / ``.mlp.layer.``);
- ``hyenadna-original-ckpt``: such a ``weights.ckpt`` alone (its config read from its ``hyper_parameters``);
- ``caduceus-hf``: a ``kuleshov-group/caduceus-{ps,ph}_*`` directory: ``model_type`` "caduceus" with ``ssm_cfg``.

Pickles are read without omegaconf and without running code (`core.checkpoint.load_pickle`). Keys are renamed
by explicit `KeyMap`s: a key no rule maps, or a model key left unfilled, is a one-line `CheckpointError`, and the
result loads strictly. Overrides carry what the files cannot tell: HyenaDNA's filter ``filter_shift`` (0.05 in
the released code; the Lightning training code defaulted to 0.0) and what it does past ``max_seq_len``; the
length a Caduceus model was trained at (``max_seq_len``; read from a released directory's name otherwise).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from longseq.core.checkpoint import CheckpointError, load_pickle, load_tensors
from longseq.core.keymap import KeyMap
from longseq.core.registry import Family, Layout, Source
from longseq.genomics.data.tokenizer import COMPLEMENT, A, N
from longseq.genomics.models import caduceus, hyenadna
from longseq.genomics.models.caduceus import Caduceus, CaduceusConfig
from longseq.genomics.models.hyenadna import HyenaDNA, HyenaDNAConfig


def _weights(directory: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return directory / name
    raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin next to config.json")


def example(model) -> tuple[torch.Tensor]:
    """Two sequences of 11 bases (ids of A, C, G, T, N): the registry's tiny forward pass."""
    return (torch.randint(A, N + 1, (2, 11)),)


# HyenaDNA -----------------------------------------------------------------------------------------------------

# The operator's parameter and buffer names, the same upstream and in `core.HyenaOperator`.
_HYENA_MIXER = (
    r"(?:in_proj|short_filter|out_proj)\.(?:weight|bias)"
    r"|filter_fn\.(?:bias|pos_emb\.[zt]|modulation\.deltas|implicit_filter\.\d+\.(?:weight|bias|freq))"
)


def hyenadna_keys(model: HyenaDNA, *, backbone: str, head: str) -> KeyMap:
    """Official HyenaDNA keys -> ours: ``backbone`` "hyena.backbone." and ``head`` "lm_head.weight" (HF), or
    "model.backbone." and "model.lm_head.weight" (original).

    The filter MLP's Sin module is shared by its positions 1, 3, 5: files store the frequency once (HF) or three
    times (original; the copies must agree). A tied head may be stored (original) or not.
    """
    b = re.escape(backbone)
    rules = [
        (rf"{b}embeddings\.word_embeddings\.weight", "embedding.weight"),
        # Models trained with gradient checkpointing wrap the mixer and the MLP: ``.mixer.layer.``, ``.mlp.layer.``.
        (rf"{b}layers\.(\d+)\.mixer\.(?:layer\.)?({_HYENA_MIXER})", r"layers.\1.mixer.\2"),
        (rf"{b}layers\.(\d+)\.mlp\.(?:layer\.)?(fc[12]\.(?:weight|bias))", r"layers.\1.mlp.\2"),
        (rf"{b}layers\.(\d+)\.norm1\.(weight|bias)", r"layers.\1.norm.\2"),
        (rf"{b}layers\.(\d+)\.norm2\.(weight|bias)", r"layers.\1.norm2.\2"),
        (rf"{b}ln_f\.(weight|bias)", r"ln_f.\1"),
        (re.escape(head), "lm_head.weight"),
    ]
    tied = {
        key: re.sub(r"\d+\.freq$", "1.freq", key)
        for key in model.state_dict()
        if re.search(r"implicit_filter\.\d+\.freq$", key) and not key.endswith(".1.freq")
    }
    if model.config.tie_word_embeddings:
        tied["lm_head.weight"] = "embedding.weight"
    return KeyMap(rules=rules, tied=tied)


# Fields of the original (Hydra) model config that only change speed, memory or the optimiser, and Hydra's name.
_ORIGINAL_IGNORED = {
    "_name_",
    "fused_mlp",
    "fused_dropout_add_ln",
    "checkpoint_mixer",
    "checkpoint_mlp",
    "process_group",
}
_ORIGINAL_LAYER_IGNORED = {"_name_", "lr", "wd", "lr_pos_emb", "fused_fft_conv", "l_max", "local_order", "w"}


def _hyenadna_config(values: Mapping[str, Any], source: str, overrides: Mapping[str, Any]) -> HyenaDNAConfig:
    try:
        return HyenaDNAConfig(**{**values, **overrides})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid HyenaDNA config: {err}") from None


def hyenadna_config_from_hf(config: Mapping[str, Any], source: str, **overrides) -> HyenaDNAConfig:
    """The HF ``HyenaConfig`` fields -> `HyenaDNAConfig` (``tie_word_embeddings`` is decided from the weights)."""
    if config.get("hyena_order", 2) != 2:
        raise CheckpointError(f"{source}: hyena_order {config['hyena_order']} is not supported (only 2 was released)")
    if not config.get("use_bias", True):
        raise CheckpointError(f"{source}: use_bias=false is not supported (every release uses the filter bias)")
    # The rest is HF bookkeeping, or hyena_filter_dropout, never applied upstream ("not implemented").
    names = {f.name for f in dataclasses.fields(HyenaDNAConfig)} - {"tie_word_embeddings"}
    return _hyenadna_config({k: v for k, v in config.items() if k in names}, source, overrides)


def hyenadna_config_from_original(config: Mapping[str, Any], source: str, **overrides) -> HyenaDNAConfig:
    """The original nested (Hydra) model config -> `HyenaDNAConfig`."""
    layer = config.get("layer")
    if not isinstance(layer, Mapping) or layer.get("_name_", "hyena") != "hyena":
        name = layer.get("_name_") if isinstance(layer, Mapping) else None
        raise CheckpointError(f"{source}: layer {name!r} is not a Hyena layer")
    if config.get("attn_layer_idx"):
        raise CheckpointError(f"{source}: attention layers (attn_layer_idx) are not supported")
    top = {"d_model", "n_layer", "d_inner", "vocab_size", "resid_dropout", "embed_dropout", "layer_norm_epsilon"}
    top |= {"pad_vocab_size_multiple", "residual_in_fp32"}
    unknown = sorted(set(config) - top - _ORIGINAL_IGNORED - {"layer", "attn_layer_idx", "attn_cfg"})
    layer_fields = ("emb_dim", "filter_order", "modulate", "train_freq", "num_inner_mlps")
    unknown += sorted(f"layer.{k}" for k in set(layer) - {*layer_fields, "order"} - _ORIGINAL_LAYER_IGNORED)
    if unknown:
        raise CheckpointError(f"{source}: unknown HyenaDNA config fields {', '.join(unknown)}")
    if layer.get("order", 2) != 2:
        raise CheckpointError(f"{source}: Hyena order {layer['order']} is not supported (only 2 was released)")
    if "l_max" not in layer:
        raise CheckpointError(f"{source}: layer.l_max is missing")
    values = {k: config[k] for k in top if k in config}
    values.update({k: layer[k] for k in layer_fields if k in layer})
    values["max_seq_len"] = layer["l_max"]
    values["short_filter_order"] = layer.get("local_order", 3)
    values["activation_freq"] = layer.get("w", 10)
    return _hyenadna_config(values, source, overrides)


def load_hyenadna_hf(source: Source, **overrides) -> HyenaDNA:
    """A ``LongSafari/hyenadna-*-seqlen-hf`` directory."""
    weights = _weights(source.path)
    config = hyenadna_config_from_hf(source.config, str(source.path / "config.json"), **overrides)
    state = load_tensors(weights)
    model = HyenaDNA(dataclasses.replace(config, tie_word_embeddings="lm_head.weight" not in state))
    keys = hyenadna_keys(model, backbone="hyena.backbone.", head="lm_head.weight")
    return keys.load(model, state, str(weights))


def _load_original(config: HyenaDNAConfig, checkpoint: Any, source: str) -> HyenaDNA:
    state = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source} is not a Lightning checkpoint (no state_dict)")
    # The original model ties its head to the embedding; a file with another head is another (untied) model.
    head, embedding = state.get("model.lm_head.weight"), state.get("model.backbone.embeddings.word_embeddings.weight")
    tied = head is None or (embedding is not None and torch.equal(head, embedding))
    model = HyenaDNA(dataclasses.replace(config, tie_word_embeddings=tied))
    keys = hyenadna_keys(model, backbone="model.backbone.", head="model.lm_head.weight")
    return keys.load(model, state, source)


def load_hyenadna_original(source: Source, **overrides) -> HyenaDNA:
    """A ``LongSafari/hyenadna-*-seqlen`` directory: nested ``config.json`` + Lightning ``weights.ckpt``."""
    weights = source.path / "weights.ckpt"
    config = hyenadna_config_from_original(source.config, str(source.path / "config.json"), **overrides)
    return _load_original(config, load_pickle(weights), str(weights))


def plain(value: Any) -> Any:
    """OmegaConf containers (inert stand-ins after a safe load: their data under ``_state``) -> dicts, lists and
    values."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    state = getattr(value, "_state", None)
    if not isinstance(state, dict):
        return value
    if "_content" in state:  # DictConfig / ListConfig
        content = state["_content"]
        if isinstance(content, Mapping):
            return {k: plain(v) for k, v in content.items()}
        return [plain(v) for v in content] if isinstance(content, list) else content
    return plain(state.get("_val"))  # a value node


def _ckpt_model_config(source: Source) -> dict | None:
    """The Hyena model config a Lightning ``.ckpt`` carries in ``hyper_parameters.model`` (None if it has none)."""
    if source.path.suffix != ".ckpt":
        return None
    contents = source.contents
    hyper = plain(contents.get("hyper_parameters")) if isinstance(contents, Mapping) else None
    model = hyper.get("model") if isinstance(hyper, dict) else None
    is_hyena = isinstance(model, dict) and isinstance(model.get("layer"), dict)
    return model if is_hyena and model["layer"].get("_name_", "hyena") == "hyena" else None


def load_hyenadna_ckpt(source: Source, **overrides) -> HyenaDNA:
    """An original Lightning ``weights.ckpt`` alone, configured by its ``hyper_parameters``."""
    where = f"{source} (hyper_parameters.model)"
    config = hyenadna_config_from_original(_ckpt_model_config(source), where, **overrides)
    return _load_original(config, source.contents, str(source))


def _is_hyenadna_hf(source: Source) -> bool:
    return source.config.get("model_type") == "hyenadna" and "hyena_order" in source.config


# What the weights cannot tell: the filter's modulation shift, and what to do past max_seq_len.
_HYENADNA_OVERRIDES = ("filter_shift", "beyond_l_max")

HYENADNA = Family(
    model_class=HyenaDNA,
    config_class=HyenaDNAConfig,
    presets=hyenadna.PRESETS,
    example=example,
    layouts=(
        Layout("hyenadna-hf", _is_hyenadna_hf, load_hyenadna_hf, overrides=_HYENADNA_OVERRIDES),
        Layout(
            "hyenadna-original",
            lambda source: isinstance(source.config.get("layer"), Mapping),
            load_hyenadna_original,
            overrides=_HYENADNA_OVERRIDES,
        ),
        Layout(
            "hyenadna-original-ckpt",
            lambda source: _ckpt_model_config(source) is not None,
            load_hyenadna_ckpt,
            files=True,
            overrides=_HYENADNA_OVERRIDES,
        ),
    ),
)


# Caduceus -----------------------------------------------------------------------------------------------------

_MAMBA = r"(?:in_proj|conv1d|dt_proj|out_proj)\.(?:weight|bias)|x_proj\.weight|A_log|D"
_COMPLEMENT_MAPS = ("caduceus.backbone.embeddings.word_embeddings.complement_map", "lm_head.complement_map")


def caduceus_keys(model: Caduceus) -> KeyMap:
    """Caduceus HF keys -> ours. PS wraps the embedding (``.embedding``) and each mixer (``mixer.submodule.``).

    Dropped: the LM head, tied to the embedding (absent from the released files, checked by `_check_caduceus`
    where present) and PS's complement tables (rebuilt from the vocabulary, checked). ``mamba_rev``'s in and out
    projections are ``mamba_fwd``'s: absent from the released files, equal where present.
    """
    ps = model.config.rcps
    embedding = r"\.embedding" if ps else ""
    submodule = r"submodule\." if ps else ""
    b = r"caduceus\.backbone\."
    rules = [
        (rf"{b}embeddings\.word_embeddings{embedding}\.weight", "embedding.weight"),
        (rf"{b}layers\.(\d+)\.mixer\.{submodule}(mamba_fwd|mamba_rev)\.({_MAMBA})", r"layers.\1.mixer.\2.\3"),
        (rf"{b}layers\.(\d+)\.norm\.(weight|bias)", r"layers.\1.norm.\2"),
        (rf"{b}norm_f\.(weight|bias)", r"norm_f.\1"),
    ]
    drop = [re.escape(key) for key in (["lm_head.lm_head.weight", *_COMPLEMENT_MAPS] if ps else ["lm_head.weight"])]
    tied = {}
    if model.config.bidirectional_weight_tie:
        for key in model.state_dict():
            if re.fullmatch(r"layers\.\d+\.mixer\.mamba_rev\.(?:in|out)_proj\.\w+", key):
                tied[key] = key.replace("mamba_rev", "mamba_fwd")
    return KeyMap(rules=rules, drop=drop, tied=tied)


def _check_caduceus(state: Mapping[str, torch.Tensor], ps: bool, source: str) -> None:
    """What the key map drops must be what the model rebuilds: the head equal to the embedding, the complement
    tables the A<->T, C<->G complement of the vocabulary."""
    embedding = state.get(f"caduceus.backbone.embeddings.word_embeddings{'.embedding' if ps else ''}.weight")
    head = state.get("lm_head.lm_head.weight" if ps else "lm_head.weight")
    if head is not None and embedding is not None and not torch.equal(head, embedding):
        raise CheckpointError(f"{source}: the LM head differs from the embedding it is tied to (untied: unsupported)")
    for key in _COMPLEMENT_MAPS:
        if key in state and not torch.equal(state[key].long(), torch.tensor(COMPLEMENT)[: len(state[key])]):
            raise CheckpointError(f"{source}: {key} is not the A<->T, C<->G complement of the DNA vocabulary")


def caduceus_config_from_hf(config: Mapping[str, Any], source: str, **overrides) -> CaduceusConfig:
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
        return CaduceusConfig(**{**values, **overrides})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid Caduceus config: {err}") from None


def _seqlen_from_name(directory: Path) -> int | None:
    """The released repositories are named ``caduceus-ps_seqlen-131k_...``: the training length, when named, a
    power of two rounded to thousands (1k = 1,024, 131k = 131,072). A Hub snapshot lies in
    ``models--kuleshov-group--<name>/snapshots/<commit>``."""
    names = [directory.name]
    if directory.parent.name == "snapshots":
        names.append(directory.parent.parent.name)
    for name in names:
        found = re.search(r"seqlen-(\d+)(k?)", name)
        if found:
            return 2 ** round(math.log2(int(found.group(1)) * 1000)) if found.group(2) else int(found.group(1))
    return None


def load_caduceus_hf(source: Source, **overrides) -> Caduceus:
    """A ``kuleshov-group/caduceus-{ps,ph}_*`` directory (``model.safetensors`` or ``pytorch_model.bin``)."""
    weights = _weights(source.path)
    overrides = {"max_seq_len": _seqlen_from_name(source.path), **overrides}
    model = Caduceus(caduceus_config_from_hf(source.config, str(source.path / "config.json"), **overrides))
    state = load_tensors(weights)
    _check_caduceus(state, model.config.rcps, str(weights))
    return caduceus_keys(model).load(model, state, str(weights))


CADUCEUS = Family(
    model_class=Caduceus,
    config_class=CaduceusConfig,
    presets=caduceus.PRESETS,
    example=example,
    layouts=(
        Layout(
            "caduceus-hf",
            lambda source: source.config.get("model_type") == "caduceus" and "ssm_cfg" in source.config,
            load_caduceus_hf,
            overrides=("max_seq_len",),  # the length it was trained at: not in the HF config
        ),
    ),
)
