"""Official LocalMamba checkpoints (hunto/LocalMamba release files) -> our LocalVim / LocalVMamba.

The released files (``local_vim_tiny.ckpt``, ``local_vim_tiny_middle_cls_token.ckpt``, ``local_vssm_small.ckpt``)
are torch pickles of ``{"state_dict": {name: tensor}}``; training checkpoints hold ``{"model": ..., ...}``.
Conversion = unwrap + an explicit key map (a source key no pattern matches raises an error naming it) + small
named transforms (position tables resized to the model's grid, a fresh head when the class count differs, an
RGB stem adapted to another channel count);
the result must load with strict=True, and `load_official` then checks every tensor of the model against
the file, key by key.

The per-direction ``A_log_{k}`` trap (LocalMamba issue #16): the official ``MultiMamba`` builds the four
``A_log_k`` of a layer as Parameters over one shared tensor, so loading a file into it on the CPU leaves all
four equal to the file's last one (LocalVim-T then scores 73.7 instead of 76.2). Our mixers hold independent
tensors, and the key-by-key check proves each ``A_log_k`` holds the file's own values.

The scan directions of a layer are not in the file: build the model with the released lists (the presets) or
the lists the checkpoint was trained with.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from timm.models import adapt_input_conv
from torch import nn

from longseq.core.checkpoint import CheckpointError, check_state_dict, load_pickle, load_tensors
from longseq.core.registry import Family
from longseq.vision.local_mamba.local_vim import LocalVim, LocalVimConfig, resize_grid
from longseq.vision.local_mamba.local_vmamba import LocalVMamba, LocalVMambaConfig
from longseq.vision.local_mamba.presets import PRESETS

# source pattern -> target pattern; LocalVim's module names are the released ones.
LOCAL_VIM_KEY_MAP: dict[str, str] = {
    "patch_embed.proj.{p}": "patch_embed.proj.{p}",
    "pos_embed": "pos_embed",
    "cls_token": "cls_token",
    "rope.freqs_cos": "rope.freqs_cos",
    "rope.freqs_sin": "rope.freqs_sin",
    "layers.{i}.norm.weight": "layers.{i}.norm.weight",
    "layers.{i}.mixer.in_proj.weight": "layers.{i}.mixer.in_proj.weight",
    "layers.{i}.mixer.out_proj.weight": "layers.{i}.mixer.out_proj.weight",
    "layers.{i}.mixer.conv1d_{k}.{p}": "layers.{i}.mixer.conv1d_{k}.{p}",
    "layers.{i}.mixer.x_proj_{k}.weight": "layers.{i}.mixer.x_proj_{k}.weight",
    "layers.{i}.mixer.dt_proj_{k}.{p}": "layers.{i}.mixer.dt_proj_{k}.{p}",
    "layers.{i}.mixer.A_log_{k}": "layers.{i}.mixer.A_log_{k}",
    "layers.{i}.mixer.D_{k}": "layers.{i}.mixer.D_{k}",
    "layers.{i}.mixer.attn.{m}.{p}": "layers.{i}.mixer.attn.{m}.{p}",
    "layers.{i}.mixer.multi_scan.weights": "layers.{i}.mixer.multi_scan.weights",
    "norm_f.weight": "norm_f.weight",
    "head.{p}": "head.{p}",
}

_OP = "layers.{s}.blocks.{j}.op."
LOCAL_VMAMBA_KEY_MAP: dict[str, str] = {
    "patch_embed.0.{p}": "patch_embed.proj.{p}",
    "patch_embed.2.{p}": "patch_embed.norm.{p}",
    "layers.{s}.blocks.{j}.norm.{p}": "layers.{s}.blocks.{j}.norm.{p}",
    **{
        _OP + name: _OP + name
        for name in (
            "in_proj.weight",
            "conv2d.{p}",
            "x_proj_weight",
            "dt_projs_weight",
            "dt_projs_bias",
            "A_logs",
            "Ds",
            "out_norm.{p}",
            "out_proj.weight",
            "multi_scan.attn.{m}.{p}",
            "multi_scan.weights",
        )
    },
    "layers.{s}.downsample.reduction.weight": "layers.{s}.downsample.reduction.weight",
    "layers.{s}.downsample.norm.{p}": "layers.{s}.downsample.norm.{p}",
    "classifier.norm.{p}": "head.norm.{p}",
    "classifier.head.{p}": "head.fc.{p}",
}

_FIELDS = {
    "i": r"\d+",
    "k": r"\d+",
    "s": r"\d+",
    "j": r"\d+",
    "p": "weight|bias",
    "m": "norm|global_reduce|channel_select",
}


def _compile(key_map: Mapping[str, str]) -> list[tuple[re.Pattern, str]]:
    compiled = []
    for source, target in key_map.items():
        regex = re.escape(source)
        for name, alternatives in _FIELDS.items():
            regex = regex.replace(re.escape("{" + name + "}"), f"(?P<{name}>{alternatives})")
        compiled.append((re.compile(f"^{regex}$"), target))
    return compiled


_MAPS = {LocalVim: _compile(LOCAL_VIM_KEY_MAP), LocalVMamba: _compile(LOCAL_VMAMBA_KEY_MAP)}


def unwrap(checkpoint: Mapping, source: str) -> dict[str, torch.Tensor]:
    """The flat state dict inside a release / training checkpoint, without ``module.`` prefixes."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{source} does not hold a state dict (found {type(checkpoint).__name__})")
    for wrapper in ("state_dict", "model"):
        if isinstance(checkpoint.get(wrapper), Mapping):
            checkpoint = checkpoint[wrapper]
            break
    state = {}
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        while key.startswith("module."):
            key = key[len("module.") :]
        state[key] = value
    return state


def map_keys(state: Mapping[str, torch.Tensor], model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """Rename every key through the model family's key map; an unmatched key raises, naming it."""
    family = type(model)
    out = {}
    for key, value in state.items():
        for pattern, target in _MAPS[family]:
            found = pattern.match(key)
            if found:
                out[target.format(**found.groupdict())] = value
                break
        else:
            raise CheckpointError(f"{source}: {key!r} is not a key of an official {family.__name__} checkpoint")
    return out


def resize_position_tables(state: dict[str, torch.Tensor], model: LocalVim, source: str) -> None:
    """Bicubically resize ``pos_embed`` / ``rope.freqs_*`` trained on a square grid to the model's grid."""
    prefix = model.num_prefix_tokens
    if "pos_embed" in state and hasattr(model, "pos_embed") and state["pos_embed"].shape != model.pos_embed.shape:
        pos = state["pos_embed"]
        side = math.isqrt(pos.shape[1] - prefix)
        if side * side != pos.shape[1] - prefix:
            raise CheckpointError(
                f"{source}: pos_embed {tuple(pos.shape)} is not a square patch grid plus {prefix} class token(s) "
                "(does the model's cls_token setting match the checkpoint?)"
            )
        if prefix:
            c = side * side // 2
            patches = resize_grid(torch.cat([pos[:, :c], pos[:, c + 1 :]], 1), (side, side), model.grid)
            c_new = model.grid[0] * model.grid[1] // 2
            state["pos_embed"] = torch.cat([patches[:, :c_new], pos[:, c : c + 1], patches[:, c_new:]], 1)
        else:
            state["pos_embed"] = resize_grid(pos, (side, side), model.grid)
    for name in ("rope.freqs_cos", "rope.freqs_sin"):
        if name in state and model.rope is not None and state[name].shape != model.rope.freqs_cos.shape:
            side = math.isqrt(state[name].shape[0])
            state[name] = resize_grid(state[name], (side, side), model.grid)


def fresh_head(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    """When the model has another number of classes than the file, keep the model's own (new) head."""
    own = model.state_dict()
    for name in ("head.weight", "head.bias", "head.fc.weight", "head.fc.bias"):
        if name in state and (name not in own or own[name].shape != state[name].shape):
            del state[name]
            if name in own:
                state[name] = own[name].clone()


def adapt_in_chans(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    """A stem trained on RGB for a model with another channel count: timm's ``adapt_input_conv``."""
    name = "patch_embed.proj.weight"
    want = model.state_dict()[name].shape[1]
    if name in state and state[name].shape[1] == 3 and want != 3:
        state[name] = adapt_input_conv(want, state[name])


def convert_state_dict(checkpoint: Mapping, model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """An official (or our own) LocalVim / LocalVMamba checkpoint -> the model's state dict, shapes checked."""
    if type(model) not in _MAPS:
        raise CheckpointError(f"no LocalMamba converter for {type(model).__name__}")
    state = unwrap(checkpoint, source)
    # our own LocalVMamba names (a checkpoint saved from this model); LocalVim's are the released ones
    if not (isinstance(model, LocalVMamba) and "patch_embed.proj.weight" in state):
        state = map_keys(state, model, source)
    if isinstance(model, LocalVim):
        resize_position_tables(state, model, source)
    fresh_head(state, model)
    adapt_in_chans(state, model)
    check_state_dict(model, state, source)
    return state


def checkpoint_filter_fn(state_dict: Mapping, model: nn.Module) -> dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn``: `convert_state_dict` for a checkpoint already in memory."""
    return convert_state_dict(state_dict, model, "checkpoint")


def verify_loaded(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Key by key: every tensor of the model equals the converted file's (catches aliased A_log_k)."""
    for key, value in model.state_dict().items():
        if not torch.equal(value, state[key].to(value.dtype)):
            raise CheckpointError(f"{source}: {key} does not hold the file's values after loading")


def load_official(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a released LocalMamba file (``.ckpt`` / ``.pth`` pickle, or ``.safetensors``) into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file not found: {path} (the LocalMamba v1.0.0 release files go there; "
            "or pass pretrained_cfg_overlay=dict(file=...))"
        )
    raw = load_tensors(path) if path.suffix == ".safetensors" else load_pickle(path)
    state = convert_state_dict(raw, model, str(path))
    model.load_state_dict(state, strict=True)
    verify_loaded(model, state, str(path))
    return model


def _family(model_class: type, config_class: type) -> Family:
    presets = {name: config for name, config in PRESETS.items() if isinstance(config, config_class)}
    return Family(model_class=model_class, config_class=config_class, presets=presets, build=model_class.from_config)


LOCAL_VIM = _family(LocalVim, LocalVimConfig)
LOCAL_VMAMBA = _family(LocalVMamba, LocalVMambaConfig)
