"""The LocalVim and LocalVMamba families, and the official LocalMamba checkpoints they read.

The released files of hunto/LocalMamba (``local_vim_tiny.ckpt``, ``local_vim_tiny_middle_cls_token.ckpt``,
``local_vssm_small.ckpt``) are torch pickles of ``{"state_dict": {name: tensor}}``; training checkpoints hold
``{"model": ..., ...}``. Either loads through ``longseq.from_pretrained`` as a single-file `Layout`. The scan
directions of each layer are not in the file, so the caller names the architecture:

    longseq.from_pretrained("local_vim_tiny.ckpt", architecture="localvim_tiny")
    longseq.from_pretrained("local_vssm_small.ckpt", architecture="localvmamba_small", num_classes=10)  # a fresh head
    longseq.from_pretrained("search.ckpt", architecture="localvim_tiny_search")  # a supernet: all eight directions
    longseq.from_pretrained("searched.ckpt", architecture="searched.json")  # `vision extract-directions` wrote it

``architecture`` (`named_architecture`) is a preset of the file's family or a JSON config (default: the config
class's defaults, a search supernet); any other override replaces a config field (``directions``, ``depth``, ...).
The file must then fit exactly, except where an override asks for a change: ``img_size`` (LocalVim's position
tables resized bicubically, as upstream does for detection inputs), ``num_classes`` (a fresh head) and ``in_chans``
(the RGB stem adapted, timm's ``adapt_input_conv``). timm's ``pretrained=True`` reads the same files through the
same conversion, with all three adaptations (timm's convention for ``num_classes`` and friends).

Conversion = unwrap + a `KeyMap` per family (LocalVim's module names are the released ones; LocalVMamba renames the
stem and head to timm's) + those adaptations; the result loads strictly, and every tensor of the model is then
compared with the file's, key by key. That check guards the per-direction ``A_log_{k}`` trap (LocalMamba issue
#16): the official ``MultiMamba`` builds the four ``A_log_k`` of a layer as Parameters over one shared tensor, so
loading a file into it leaves all four equal to the file's last one (LocalVim-T then scores 73.7 instead of 76.2);
ours are independent tensors, and the check proves each holds the file's own values.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from timm.models import adapt_input_conv
from torch import nn

from longseq.core.checkpoint import CheckpointError, config_from_dict, load_pickle, load_strict, load_tensors
from longseq.core.keymap import KeyMap
from longseq.core.registry import Family, Layout, Source
from longseq.vision.local_mamba.local_vim import LocalVim, LocalVimConfig, resize_grid
from longseq.vision.local_mamba.local_vmamba import LocalVMamba, LocalVMambaConfig
from longseq.vision.local_mamba.mixers import img_pair
from longseq.vision.local_mamba.presets import PRESETS

LOCAL_VIM_KEYS = KeyMap(
    rules=[
        (r"(patch_embed\.proj\.(?:weight|bias)|pos_embed|cls_token|rope\.freqs_(?:cos|sin)|norm_f\.weight)", r"\1"),
        (r"(head\.(?:weight|bias))", r"\1"),
        (r"(layers\.\d+\.norm\.weight)", r"\1"),
        (r"(layers\.\d+\.mixer\.(?:in_proj|out_proj)\.weight)", r"\1"),
        (
            r"(layers\.\d+\.mixer\.(?:conv1d_\d+\.(?:weight|bias)|x_proj_\d+\.weight|dt_proj_\d+\.(?:weight|bias)))",
            r"\1",
        ),
        (r"(layers\.\d+\.mixer\.(?:A_log_\d+|D_\d+|multi_scan\.weights))", r"\1"),
        (r"(layers\.\d+\.mixer\.attn\.(?:norm|global_reduce|channel_select)\.(?:weight|bias))", r"\1"),
    ]
)

_OP = r"layers\.\d+\.blocks\.\d+\.op\."
LOCAL_VMAMBA_KEYS = KeyMap(
    rules=[
        (r"patch_embed\.0\.(weight|bias)", r"patch_embed.proj.\1"),
        (r"patch_embed\.2\.(weight|bias)", r"patch_embed.norm.\1"),
        (r"classifier\.norm\.(weight|bias)", r"head.norm.\1"),
        (r"classifier\.head\.(weight|bias)", r"head.fc.\1"),
        # our own stem and head names (a state dict saved from this model)
        (r"(patch_embed\.(?:proj|norm)\.(?:weight|bias)|head\.(?:norm|fc)\.(?:weight|bias))", r"\1"),
        (r"(layers\.\d+\.blocks\.\d+\.norm\.(?:weight|bias))", r"\1"),
        (rf"({_OP}(?:in_proj\.weight|conv2d\.(?:weight|bias)|out_norm\.(?:weight|bias)|out_proj\.weight))", r"\1"),
        (rf"({_OP}(?:x_proj_weight|dt_projs_weight|dt_projs_bias|A_logs|Ds))", r"\1"),
        (rf"({_OP}multi_scan\.(?:weights|attn\.(?:norm|global_reduce|channel_select)\.(?:weight|bias)))", r"\1"),
        (r"(layers\.\d+\.downsample\.(?:reduction\.weight|norm\.(?:weight|bias)))", r"\1"),
    ]
)

# The overrides that change the architecture away from the file's, each adapting the weights (module docstring).
ADAPTABLE = ("img_size", "num_classes", "in_chans")


def unwrap(checkpoint, source: str) -> dict[str, torch.Tensor]:
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
        state[re.sub(r"^(module\.)+", "", str(key))] = value
    return state


def resize_position_tables(
    state: dict[str, torch.Tensor], model: LocalVim, source: str, *, grid: tuple[int, int] | None = None
) -> None:
    """Bicubically resize ``pos_embed`` / ``rope.freqs_*`` from the patch ``grid`` they were trained on (rows,
    columns) to the model's; ``grid`` None: a square one (the released files were trained at 224 x 224)."""
    prefix = model.num_prefix_tokens
    if "pos_embed" in state and hasattr(model, "pos_embed") and state["pos_embed"].shape != model.pos_embed.shape:
        pos = state["pos_embed"]
        old = grid or _square(pos.shape[1] - prefix, f"{source}: pos_embed {tuple(pos.shape)}", prefix)
        if old[0] * old[1] != pos.shape[1] - prefix:
            raise CheckpointError(f"{source}: pos_embed {tuple(pos.shape)} is not a {old[0]} x {old[1]} patch grid")
        if prefix:
            c = old[0] * old[1] // 2  # the middle class token sits after half the patches
            patches = resize_grid(torch.cat([pos[:, :c], pos[:, c + 1 :]], 1), old, model.grid)
            c_new = model.grid[0] * model.grid[1] // 2
            state["pos_embed"] = torch.cat([patches[:, :c_new], pos[:, c : c + 1], patches[:, c_new:]], 1)
        else:
            state["pos_embed"] = resize_grid(pos, old, model.grid)
    for name in ("rope.freqs_cos", "rope.freqs_sin"):
        if name in state and model.rope is not None and state[name].shape != model.rope.freqs_cos.shape:
            old = grid or _square(state[name].shape[0], f"{source}: {name} {tuple(state[name].shape)}", 0)
            state[name] = resize_grid(state[name], old, model.grid)


def _square(patches: int, what: str, prefix: int) -> tuple[int, int]:
    side = math.isqrt(patches)
    if side * side != patches:
        raise CheckpointError(
            f"{what} is not a square patch grid plus {prefix} class token(s): load it at the size it was trained "
            "at (img_size=(h, w)), or from its checkpoint directory (config.json records the size); "
            "does the model's cls_token setting match the checkpoint?"
        )
    return (side, side)


def adapt_checkpoint(model: nn.Module, overrides: dict) -> nn.Module:
    """A loaded model rebuilt with ``overrides`` (any config field), its weights carried over: position tables
    resized from its own grid (non-square included), a fresh head for another ``num_classes``, the stem adapted
    for another ``in_chans``; everything else must fit exactly (`Family.adapt`)."""
    source = f"{type(model).__name__} with {', '.join(overrides)} changed"
    try:
        config = dataclasses.replace(model.config, **overrides)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"invalid {type(model.config).__name__}: {err}") from None
    new = type(model).from_config(config)
    state = dict(model.state_dict())
    if isinstance(model, LocalVim):
        resize_position_tables(state, new, source, grid=model.grid)
    fresh_head(state, new)
    adapt_in_chans(state, new)
    load_strict(new, state, source)
    return new.eval()


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


def keys_of(model: nn.Module) -> KeyMap:
    if isinstance(model, LocalVim):
        return LOCAL_VIM_KEYS
    if isinstance(model, LocalVMamba):
        return LOCAL_VMAMBA_KEYS
    raise CheckpointError(f"no LocalMamba key map for {type(model).__name__}")


def convert_state_dict(
    checkpoint, model: nn.Module, source: str, *, adapt: tuple[str, ...] = ADAPTABLE, grid=None
) -> dict[str, torch.Tensor]:
    """An official LocalVim / LocalVMamba checkpoint -> the model's state dict, shapes checked.

    Args:
        adapt: which of `ADAPTABLE` may differ between the file and the model (the weights are adapted).
        grid: the patch grid (rows, columns) the file was trained at; None: square.
    """
    state = keys_of(model).rename(unwrap(checkpoint, source), source)
    if "img_size" in adapt and isinstance(model, LocalVim):
        resize_position_tables(state, model, source, grid=grid)
    if "num_classes" in adapt:
        fresh_head(state, model)
    if "in_chans" in adapt:
        adapt_in_chans(state, model)
    return state


def load_converted(
    model: nn.Module, checkpoint, source: str, *, adapt: tuple[str, ...] = ADAPTABLE, grid=None
) -> nn.Module:
    """Convert, load strictly, then check every tensor of the model against the converted file (aliased A_log_k)."""
    state = convert_state_dict(checkpoint, model, source, adapt=adapt, grid=grid)
    load_strict(model, state, source)
    for key, value in model.state_dict().items():
        if not torch.equal(value, state[key].to(value.dtype)):
            raise CheckpointError(f"{source}: {key} does not hold the file's values after loading")
    return model


def checkpoint_filter_fn(state_dict: Mapping, model: nn.Module) -> dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn``: `convert_state_dict` for a checkpoint already in memory."""
    return convert_state_dict(state_dict, model, "checkpoint")


def load_release_file(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """timm's ``custom_load``: a released file (``.ckpt`` / ``.pth`` pickle, or ``.safetensors``) into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file not found: {path} (the LocalMamba v1.0.0 release files go there; "
            "or pass pretrained_cfg_overlay=dict(file=...))"
        )
    raw = load_tensors(path) if path.suffix == ".safetensors" else load_pickle(path)
    return load_converted(model, raw, str(path), grid=_trained_grid(path))


def _trained_grid(path: Path) -> tuple[int, int] | None:
    """The patch grid a LocalVim file was trained at, when a config.json beside it (our format) records it."""
    try:
        config = json.loads((path.parent / "config.json").read_text())
        height, width = img_pair(config["img_size"])
        return (height // config["patch_size"], width // config["patch_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _state_keys(contents) -> list[str]:
    """The keys of a file's (wrapped) state dict; none for anything else."""
    if not isinstance(contents, Mapping):
        return []
    for wrapper in ("state_dict", "model"):
        if isinstance(contents.get(wrapper), Mapping):
            return [str(key) for key in contents[wrapper]]
    return [str(key) for key in contents]


def _signature(pattern: str):
    """A `Layout.matches`: some key of the file's state dict fully matches ``pattern`` (after ``module.``s)."""
    compiled = re.compile(r"(module\.)*" + pattern)
    return lambda source: any(compiled.fullmatch(key) for key in _state_keys(source.contents))


def named_architecture(name: str | os.PathLike) -> LocalVimConfig | LocalVMambaConfig:
    """A LocalMamba architecture by name: a preset, or a JSON config file (``model_type`` and the config fields:
    a checkpoint's ``config.json``, or what ``vision extract-directions`` writes). Raises `CheckpointError`."""
    if str(name) in PRESETS:
        return PRESETS[str(name)]
    path = Path(name)
    if path.suffix != ".json":
        raise CheckpointError(f"{str(name)!r} is neither a LocalMamba preset ({', '.join(PRESETS)}) nor a .json config")
    if not path.is_file():
        raise CheckpointError(f"no such architecture file: {path}")
    try:
        values = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not a JSON config: {err}") from None
    model_type = values.get("model_type") if isinstance(values, dict) else None
    for model_class, config_class in ((LocalVim, LocalVimConfig), (LocalVMamba, LocalVMambaConfig)):
        if model_type == model_class.model_type:
            return config_from_dict(config_class, values, str(path))
    raise CheckpointError(f"{path}: model_type {model_type!r} is not local_vim or local_vmamba")


def load_release(
    model_class: type,
    config_class: type,
    source: Source,
    architecture: str | os.PathLike | None = None,
    **fields,
) -> nn.Module:
    """A release file read as ``architecture`` (a preset or JSON config) with ``fields`` replaced (module docstring)."""
    kind = model_class.__name__
    base = named_architecture(architecture) if architecture is not None else config_class()
    if not isinstance(base, config_class):
        raise CheckpointError(f"{source} holds a {kind}; the architecture {architecture} is a {type(base).__name__}")
    try:
        config = dataclasses.replace(base, **fields)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid {config_class.__name__}: {err}") from None
    supernet = any(key.endswith("multi_scan.weights") for key in _state_keys(source.contents))
    if supernet and not config.search:
        raise CheckpointError(f"{source} is a {kind} search supernet: name a *_search architecture")
    if config.search and not supernet:
        finals = ", ".join(name for name, c in PRESETS.items() if isinstance(c, config_class) and not c.search)
        raise CheckpointError(
            f"{source} does not record its {kind} scan directions: name them with architecture= "
            f"({finals}, or a .json config) or directions=[[...], ...]"
        )
    adapt = tuple(name for name in ADAPTABLE if name in fields)
    try:
        return load_converted(model_class.from_config(config), source.contents, str(source), adapt=adapt)
    except CheckpointError as err:
        raise CheckpointError(
            f"{err} (read as {architecture or config_class.__name__ + '()'}: override the fields that differ; "
            "img_size, num_classes and in_chans overrides adapt the weights)"
        ) from None


def _example(model: nn.Module) -> tuple[torch.Tensor]:
    """A 32 x 32 image: any size works (LocalVim resizes its position tables, window scans pad the grid)."""
    return (torch.randn(1, model.config.in_chans, 32, 32),)


def _family(model_class: type, config_class: type, layout: str, signature: str) -> Family:
    def load(source: Source, **overrides) -> nn.Module:
        return load_release(model_class, config_class, source, **overrides)

    fields = tuple(f.name for f in dataclasses.fields(config_class))
    return Family(
        model_class=model_class,
        config_class=config_class,
        presets={name: config for name, config in PRESETS.items() if isinstance(config, config_class)},
        layouts=(Layout(layout, _signature(signature), load, files=True, overrides=("architecture", *fields)),),
        build=model_class.from_config,
        adapt=adapt_checkpoint,
        example=_example,
    )


LOCAL_VIM = _family(LocalVim, LocalVimConfig, "localvim-release", r"layers\.\d+\.mixer\.conv1d_\d+\.weight")
LOCAL_VMAMBA = _family(
    LocalVMamba,
    LocalVMambaConfig,
    "localvmamba-release",
    r"layers\.\d+\.blocks\.\d+\.op\.multi_scan\.attn\.norm\.weight",
)
