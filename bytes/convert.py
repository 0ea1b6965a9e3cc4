"""Checkpoints of the mblm (0.4.2) and MEGABYTE-pytorch (0.3.6) packages -> our `MBLM`.

Both packages share one architecture: mblm is a fork of lucidrains' MEGABYTE-pytorch 0.3.5 generalised to
per-stage blocks (transformer or Mamba). It is our MBLM with the options that follow the packages exactly
(`bytes.models.mblm`): the "lucidrains" transformer block (token shift, clamped RMSNorm, free head width),
learned or rotary unit positions, the pad id left out of the loss, and no final norm on mambapy Mamba stages.
MEGABYTE-pytorch is *not* the MEGABYTE paper's model (our `Megabyte`): it conditions and predicts as MBLM does,
so its checkpoints load as `MBLM` too.

What the packages write, and what we read (loading never runs code: ``torch.load(weights_only=True)`` or
safetensors):

- mblm: ``torch.save({"MODEL": state_dict, "LOSS": loss})`` (``mblm.utils.io.save_model_state``) and an
  ``MBLMModelConfig`` (``model_dump(mode="json")``);
- MEGABYTE-pytorch: ``torch.save(model.state_dict())`` and the ``MEGABYTE(...)`` keyword arguments.

A checkpoint is a directory with ``config.json`` (the constructor arguments, bare or under ``"config"`` /
``"kwargs"`` with ``"package"`` and ``"package_version"``) and one checkpoint file (``.pth``, ``.pt``, ``.bin``,
``.ckpt``, or ``model.safetensors``; ``"checkpoint_file"`` in the config names it), or the checkpoint file alone
with ``from_pretrained(path, config=...)`` (a dict or a JSON file of the same arguments).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from longseq.core.checkpoint import CONFIG_NAME, CheckpointError, load_pickle, load_tensors
from longseq.core.keymap import KeyMap
from longseq.core.registry import Layout, Source

MBLM_VERSION = "0.4.2"
MEGABYTE_VERSION = "0.3.6"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


@dataclass(frozen=True)
class Package:
    """What differs between the two packages: their name, version and the names in configs and state dicts."""

    name: str
    version: str
    config_key: str
    """Where a config.json beside the checkpoint keeps the constructor arguments (with "package" and its version)."""
    stages: str
    """The module list of the stages' transformers (or Mamba stacks)."""
    proj: str
    """The Linear from each stage to its children's conditioning."""
    embeds: str
    """The per-stage byte embeddings (local stage first)."""

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


MBLM_PACKAGE = Package("mblm", MBLM_VERSION, "config", "stage_models", "to_next_stage_proj", "token_embs_rev")
MEGABYTE_PACKAGE = Package(
    "MEGABYTE-pytorch", MEGABYTE_VERSION, "kwargs", "transformers", "to_next_transformer_projections", "token_embs"
)


# ---------------------------------------------------------------------------------------------- configs


def _stage_positions(block: Mapping[str, Any]) -> dict[str, bool]:
    kind = block.get("pos_emb_type")
    if kind not in (None, "fixed", "rope"):
        raise ValueError(f"unknown pos_emb_type {kind!r}")
    return {"pos_emb": kind == "fixed", "pos_rope": kind == "rope"}


def mblm_config(values: Mapping[str, Any]):
    """An ``MBLMModelConfig`` dump -> our `MBLMConfig` (raises KeyError, TypeError or ValueError)."""
    from longseq.bytes.models.mblm import MBLMConfig, StageConfig

    dims, layers, lens = values["hidden_dims"], values["num_layers"], values["seq_lens"]
    if not len(dims) == len(layers) == len(lens):
        raise ValueError("hidden_dims, num_layers and seq_lens differ in length")
    blocks = values["block"]
    blocks = blocks if isinstance(blocks, list) else [blocks] * len(dims)
    if len(blocks) != len(dims):
        raise ValueError(f"{len(blocks)} blocks for {len(dims)} stages")
    stages = []
    for d, n, p, block in zip(dims, layers, lens, blocks):
        shape = {"d_model": d, "n_layers": n, "seq_len": p, **_stage_positions(block)}
        kind = block["block_type"]
        if kind == "transformer":
            stage = StageConfig(
                **shape,
                block="lucidrains",
                num_heads=block["attn_num_heads"],
                head_dim=block["attn_head_dims"],
                rotary=block["attn_use_rot_embs"],
                mlp_ratio=block.get("ff_multiplier", 2),
            )
        elif kind in ("mamba1", "mamba2"):
            # mamba1: mambapy's Mamba (mblm without mamba_ssm): residual blocks, no final norm.
            # mamba2: mamba_ssm's MixerModel layers (our MixerStack, names and all).
            extra = {"mixer": "mamba", "final_norm": False} if kind == "mamba1" else {"mixer": "mamba2"}
            stage = StageConfig(
                **shape,
                **extra,
                d_state=block["d_state"],
                d_conv=block["d_conv"],
                expand=block["expand"],
                headdim=block["headdim"],
                mlp_ratio=0.0,
            )
        else:
            raise ValueError(f"block_type {kind!r} is not a decoder block longseq reads (transformer, mamba1, mamba2)")
        stages.append(stage)
    return MBLMConfig(
        stages=stages,
        vocab_size=values["num_tokens"],
        pad_id=values["pad_token_id"],
        train_checkpoint_chunks=values.get("train_checkpoint_chunks"),
        empty_start_context=True,
    )


def megabyte_config(kwargs: Mapping[str, Any]):
    """``MEGABYTE(**kwargs)`` arguments -> our `MBLMConfig` (the constructor's defaults where one is absent)."""
    from longseq.bytes.models.mblm import MBLMConfig, StageConfig

    depth, lens = list(kwargs["depth"]), list(kwargs["max_seq_len"])
    dims = kwargs["dim"]
    dims = list(dims) if isinstance(dims, list | tuple) else [dims] * len(depth)
    if not len(dims) == len(depth) == len(lens):
        raise ValueError("dim, depth and max_seq_len differ in length")
    heads, head_dim = kwargs.get("heads", 8), kwargs.get("dim_head", 64)
    rotary, pos_emb, ff_mult = kwargs.get("rel_pos", False), kwargs.get("pos_emb", False), kwargs.get("ff_mult", 4)
    stages = [
        StageConfig(
            d_model=d,
            n_layers=n,
            seq_len=p,
            block="lucidrains",
            num_heads=heads,
            head_dim=head_dim,
            rotary=rotary,
            mlp_ratio=ff_mult,
            pos_emb=pos_emb,
        )
        for d, n, p in zip(dims, depth, lens)
    ]
    return MBLMConfig(
        stages=stages, vocab_size=kwargs["num_tokens"], pad_id=kwargs.get("pad_id", 0), empty_start_context=True
    )


# ---------------------------------------------------------------------------------------------- tensors


def _keymap(package: Package, n: int) -> KeyMap:
    """The package's keys -> ours, for n stages (its token embeddings count stages local-first)."""
    s, e = re.escape(package.stages), re.escape(package.embeds)
    layer = rf"{s}\.(\d+)\.layers\.(\d+)"
    ours = r"decoder.stages.\1.layers.\2"
    rules = [
        (r"start_tokens\.(\d+)", r"decoder.start_tokens.\1"),
        (r"pos_embs\.(\d+)\.weight", r"decoder.pos_embs.\1.weight"),
        (rf"{layer}\.0\.norm\.g", rf"{ours}.attn_norm.weight"),
        (rf"{layer}\.0\.to_qkv\.weight", rf"{ours}.attn.in_proj.weight"),
        (rf"{layer}\.0\.to_out\.weight", rf"{ours}.attn.out_proj.weight"),
        (rf"{layer}\.1\.0\.g", rf"{ours}.mlp_norm.weight"),
        (rf"{layer}\.1\.1\.(weight|bias)", rf"{ours}.mlp.fc1.\3"),
        (rf"{layer}\.1\.4\.(weight|bias)", rf"{ours}.mlp.fc2.\3"),
        (rf"{layer}\.((mixer|norm)\..+)", rf"{ours}.\3"),  # Mamba stages: our names already
        (rf"{s}\.(\d+)\.norm\.g", r"decoder.stages.\1.norm_f.weight"),
        (rf"{s}\.(\d+)\.norm_f\.weight", r"decoder.stages.\1.norm_f.weight"),
        (rf"{re.escape(package.proj)}\.(\d+)\.1\.(weight|bias)", r"decoder.to_next.\1.\2"),
        (r"to_logits\.(weight|bias)", r"decoder.head.\1"),
    ]
    if package is MBLM_PACKAGE:
        table, post = r"\.embedding\.weight", (r"\._post\.1", r"\._post\.2", r"\._post\.3")
        rules.append((rf"{e}\.0{table}", f"decoder.embeds.{n - 1}.weight"))
    else:
        table, post = r"\.0\.weight", (r"\.2", r"\.3", r"\.4")
        rules.append((rf"{e}\.0\.weight", f"decoder.embeds.{n - 1}.weight"))
    for j in range(1, n):
        k = n - 1 - j  # the stage whose units embedding j builds
        rules.append((rf"{e}\.{j}{table}", f"decoder.embeds.{k}.weight"))
        for i, part in enumerate(post):
            rules.append((rf"{e}\.{j}{part}\.(weight|bias)", rf"decoder.patch_projs.{k}.{i}.\1"))
    return KeyMap(rules, drop=[rf"{s}\.\d+\.rotary_emb\.inv_freq"])


def _merge_qkv(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``to_q`` and ``to_kv`` of each attention -> one ``to_qkv`` (rows q; k; v, as our ``in_proj``)."""
    out = {}
    for key, tensor in state.items():
        base = key.removesuffix("to_q.weight")
        if key.endswith(".to_kv.weight") and key.removesuffix("to_kv.weight") + "to_q.weight" in state:
            continue
        if base != key and base + "to_kv.weight" in state:
            kv = state[base + "to_kv.weight"]
            if kv.shape != (2 * tensor.shape[0], tensor.shape[1]):
                raise CheckpointError(f"{source}: {key} {tuple(tensor.shape)} and to_kv {tuple(kv.shape)} do not pair")
            out[base + "to_qkv.weight"] = torch.cat((tensor, kv))
        else:
            out[key] = tensor
    return out


def _check_rotary(state: Mapping[str, torch.Tensor], package: Package, config, source: str) -> None:
    """The rotary frequencies the package stored must be those of the config's head width (else it describes
    another model)."""
    for k, stage in enumerate(config.stages):
        stored = state.get(f"{package.stages}.{k}.rotary_emb.inv_freq")
        if stored is None:
            if stage.block == "lucidrains" and stage.rotary:
                raise CheckpointError(f"{source}: stage {k} has rotary embeddings in its config but none stored")
            continue
        if stage.block != "lucidrains" or not stage.rotary:
            raise CheckpointError(f"{source}: stage {k} stores rotary frequencies its config does not use")
        head_dim = stage.head_dim
        expected = 1.0 / 10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)
        if stored.shape != expected.shape or not torch.allclose(stored.float(), expected):
            raise CheckpointError(
                f"{source}: stage {k}'s rotary frequencies ({stored.numel()}) are not those of head width "
                f"{head_dim} in its config"
            )


def convert(state: Mapping[str, Any], config, package: Package, source: str) -> nn.Module:
    """A package state dict and our config -> our `MBLM` in eval mode, loaded strictly."""
    from longseq.bytes.models.mblm import MBLM

    if not state or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise CheckpointError(f"{source} does not hold a state dict of tensors")
    old = sorted(key for key in state if re.fullmatch(rf"{package.embeds}\.\d+(\.\d+)?\.weight", key))
    if package is MBLM_PACKAGE and old:
        raise CheckpointError(
            f"{source} is in another mblm layout ({old[0]}); longseq reads the checkpoints of mblm {MBLM_VERSION}"
        )
    _check_rotary(state, package, config, source)
    model = MBLM(config)
    keymap = _keymap(package, len(config.stages))
    return keymap.load(model, _merge_qkv(state, source), source)


# ---------------------------------------------------------------------------------------------- files


def _arguments(values: Mapping[str, Any], package: Package, source: str) -> Mapping[str, Any]:
    """The constructor arguments in a config (bare, or under the package's key with name and version)."""
    if "package" not in values:
        return values
    version = values.get("package_version")
    if values["package"] != package.name:
        raise CheckpointError(f"{source} is a {values['package']} config, not a {package.name} one")
    if version != package.version:
        raise CheckpointError(
            f"{source} was written by {package.name} {version}; longseq reads the checkpoint layout of {package}"
        )
    if not isinstance(values.get(package.config_key), Mapping):
        raise CheckpointError(f"{source} has no {package.config_key!r} with the constructor arguments")
    return values[package.config_key]


def _our_config(arguments: Mapping[str, Any], package: Package, source: str):
    try:
        return mblm_config(arguments) if package is MBLM_PACKAGE else megabyte_config(arguments)
    except KeyError as err:
        raise CheckpointError(f"{source}: the {package.name} constructor arguments lack {err}") from None
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid {package.name} constructor arguments: {err}") from None


def _state_dict(contents: Any) -> Any:
    """mblm's ``{"MODEL": state_dict, "LOSS": ...}`` or a bare state dict -> the state dict."""
    if isinstance(contents, Mapping) and isinstance(contents.get("MODEL"), Mapping):
        return contents["MODEL"]
    return contents


def _read_checkpoint(path: Path) -> Any:
    return _state_dict(load_tensors(path) if path.suffix == ".safetensors" else load_pickle(path))


def _checkpoint_file(directory: Path, values: Mapping[str, Any]) -> Path:
    named = values.get("checkpoint_file")
    if named is not None:
        return directory / named
    found = sorted(p for p in directory.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
    if not found and (directory / "model.safetensors").is_file():
        return directory / "model.safetensors"
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or f"no {'/'.join(CHECKPOINT_SUFFIXES)} file"
        raise CheckpointError(f"{directory}: need exactly one checkpoint file beside {CONFIG_NAME}, found {listed}")
    return found[0]


def _is_package_config(values: Mapping[str, Any] | None, package: Package) -> bool:
    if not isinstance(values, Mapping):
        return False
    if "package" in values:
        return values["package"] == package.name
    marks = ("hidden_dims", "seq_lens", "block") if package is MBLM_PACKAGE else ("depth", "max_seq_len", "num_tokens")
    return all(mark in values for mark in marks)


def _is_package_state(contents: Any, package: Package) -> bool:
    state = _state_dict(contents)
    if not isinstance(state, Mapping):
        return False
    keys = [key for key in state if isinstance(key, str)]
    return any(key.startswith(package.stages + ".") for key in keys) and any(
        key.startswith(package.embeds + ".") for key in keys
    )


def _load_directory(source: Source, package: Package) -> nn.Module:
    values = source.config
    config = _our_config(_arguments(values, package, str(source)), package, str(source))
    path = _checkpoint_file(source.path, values)
    return convert(_read_checkpoint(path), config, package, str(path))


def _load_file(source: Source, package: Package, config: Mapping[str, Any] | str | Path | None = None) -> nn.Module:
    if config is None:
        raise CheckpointError(
            f"{source} is a {package.name} checkpoint without its constructor arguments: give them as "
            f"from_pretrained(path, config=...) (a dict or a JSON file), or put the file in a directory with a "
            f"{CONFIG_NAME}"
        )
    if not isinstance(config, Mapping):
        try:
            config = json.loads(Path(config).read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(f"cannot read the config {config}: {err}") from None
    arguments = _arguments(config, package, "the config")
    return convert(_state_dict(source.contents), _our_config(arguments, package, "the config"), package, str(source))


def _layouts(package: Package, tag: str) -> tuple[Layout, Layout]:
    return (
        Layout(
            f"{tag}-dir",
            matches=lambda source: _is_package_config(source.config, package),
            load=lambda source: _load_directory(source, package),
        ),
        Layout(
            f"{tag}-file",
            matches=lambda source: _is_package_state(source.contents, package),
            load=lambda source, **options: _load_file(source, package, **options),
            files=True,
            overrides=("config",),
        ),
    )


LAYOUTS: tuple[Layout, ...] = (*_layouts(MBLM_PACKAGE, "mblm"), *_layouts(MEGABYTE_PACKAGE, "megabyte-pytorch"))
"""The checkpoints of both packages, read as `MBLM` (declared on the MBLM family)."""
