"""Convert the released BTB3D tokenizer checkpoints (Hugging Face ``Forithmuscom/BTB3D``) to our `BTB3D`.

Two layouts, from a local file (``.ckpt`` / ``.pt`` torch pickle or ``.safetensors``):

- ``tokenizer``: the flat state dict of ``VisionTokenizer.tokenizer`` (the released ``iter_*_fixed.ckpt``):
  ``encoder.*``, ``decoder.*``, ``quantize.mask``.
- ``training``: the whole ``VisionTokenizer`` of a training run (``iter_N.ckpt``, accelerate's
  ``model.safetensors``): the same keys under ``tokenizer.``, plus ``discriminator.*`` (3D),
  ``discriminator_2d.*`` and, with the perceptual loss, ``perceptual_model.*`` (VGG16, which we load from its
  own file instead and drop here).

Training runs store bf16; everything is upcast to float32. Each of our keys comes from exactly one named source
key through `KEY_MAP`; a missing source key, an unexpected one, or a shape mismatch raises `CheckpointError`
naming it. Quirk of the released encoder: block j >= 1 of every stage is named ``res_block_0_{j}`` whatever the
stage (``encoder.res_blocks.res_block_2.res_block_0_3...``); the decoder uses ``res_block_{s}_{j}``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch

from longseq.core.checkpoint import CheckpointError, check_state_dict, format_keys, load_tensors
from longseq.vision.btb3d.lfq import bit_weights
from longseq.vision.btb3d.model import BTB3D, BTB3DConfig

# Our key (regex) -> source key template; groups i (encoder stage), s (decoder stage), j (block), rest.
_RES = r"(?P<rest>norm1\.weight|norm1\.bias|conv1\.weight|norm2\.weight|norm2\.bias|conv2\.weight|shortcut\.weight)"
KEY_MAP: list[tuple[str, str]] = [
    (r"encoder\.conv_in\.(?P<p>weight|bias)", "encoder.conv_first.conv.{p}"),
    (rf"encoder\.stages\.(?P<i>\d+)\.blocks\.(?P<j>\d+)\.{_RES}", "encoder.res_blocks.res_block_{i}.{eblock}.{rest}"),
    (
        r"encoder\.stages\.(?P<i>\d+)\.downsample\.(?P<p>weight|bias)",
        "encoder.conv_downsample_blocks.conv_downsample_{i}.conv.{p}",
    ),
    (rf"encoder\.mid\.(?P<j>\d+)\.{_RES}", "encoder.res_blocks.res_block_final.res_block_final_{j}.{rest}"),
    (r"encoder\.norm_out\.(?P<p>weight|bias)", "encoder.final_norm.norm_fn.{p}"),
    (r"encoder\.conv_out\.(?P<p>weight|bias)", "encoder.conv_last.conv.{p}"),
    (r"decoder\.conv_in\.(?P<p>weight|bias)", "decoder.conv_first.conv.{p}"),
    (rf"decoder\.mid\.(?P<j>\d+)\.{_RES}", "decoder.res_blocks.res_block_pre.res_block_pre_{j}.{rest}"),
    (
        r"decoder\.stages\.(?P<s>\d+)\.cond_norm\.(?P<g>gamma|beta)\.(?P<p>weight|bias)",
        "decoder.cond_norm_layers.cond_norm_{s}.{g}.{p}",
    ),
    (
        rf"decoder\.stages\.(?P<s>\d+)\.blocks\.(?P<j>\d+)\.{_RES}",
        "decoder.res_blocks.res_block_{s}.res_block_{s}_{j}.{rest}",
    ),
    (
        r"decoder\.stages\.(?P<s>\d+)\.upsample\.(?P<p>weight|bias)",
        "decoder.conv_upsample_blocks.conv_upsample_{s}.conv1.conv.{p}",
    ),
    (r"decoder\.norm_out\.(?P<p>weight|bias)", "decoder.final_norm.norm_fn.{p}"),
    (r"decoder\.conv_out\.(?P<p>weight|bias)", "decoder.conv_last.conv.{p}"),
]

# Inside a res block: our name -> the released one (every released conv sits in a causal wrapper: `.conv.`).
_RES_NAMES = {
    "norm1.weight": "norm_0.norm_fn.weight",
    "norm1.bias": "norm_0.norm_fn.bias",
    "conv1.weight": "conv_0.conv.weight",
    "norm2.weight": "norm_1.norm_fn.weight",
    "norm2.bias": "norm_1.norm_fn.bias",
    "conv2.weight": "conv_1.conv.weight",
    "shortcut.weight": "conv_shortcut.conv.weight",
}

# Source keys that carry no weights of ours: checked (the LFQ bit mask) or dropped on purpose.
_MASK_KEY = "quantize.mask"
_TRAINING_PREFIX = "tokenizer."
_DISCRIMINATOR_PREFIXES = ("discriminator.", "discriminator_2d.")
_PERCEPTUAL_PREFIX = "perceptual_model."


def _encoder_block_name(i: int, j: int) -> str:
    """The released encoder names block 0 of stage i `res_block_{i}_0` but blocks j >= 1 `res_block_0_{j}`."""
    return f"res_block_{i}_0" if j == 0 else f"res_block_0_{j}"


def source_key(key: str) -> str:
    """The released name of one of our tokenizer keys (``KeyError`` for a key `KEY_MAP` does not cover)."""
    for pattern, template in KEY_MAP:
        found = re.fullmatch(pattern, key)
        if found is None:
            continue
        parts = found.groupdict()
        if "rest" in parts:
            parts["rest"] = _RES_NAMES[parts["rest"]]
        if "eblock" in template:
            parts["eblock"] = _encoder_block_name(int(parts["i"]), int(parts["j"]))
        return template.format(**parts)
    raise KeyError(f"no source key for {key}")


def upcast(tensor: torch.Tensor) -> torch.Tensor:
    """bf16 / fp16 training weights -> float32; integer buffers unchanged."""
    return tensor.float() if tensor.is_floating_point() else tensor


def split_training_layout(
    state: Mapping[str, torch.Tensor], layout: Literal["auto", "tokenizer", "training"], source: str
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """(tokenizer keys without prefix, {"discriminator": ..., "discriminator_2d": ...}) of a source state dict."""
    if layout == "auto":
        layout = "training" if any(k.startswith(_TRAINING_PREFIX) for k in state) else "tokenizer"
    if layout == "tokenizer":
        return dict(state), {}
    tokenizer: dict[str, torch.Tensor] = {}
    discriminators: dict[str, dict[str, torch.Tensor]] = {"discriminator": {}, "discriminator_2d": {}}
    for key, value in state.items():
        if key.startswith(_TRAINING_PREFIX):
            tokenizer[key[len(_TRAINING_PREFIX) :]] = value
        elif key.startswith(_DISCRIMINATOR_PREFIXES):
            name, _, rest = key.partition(".")
            discriminators[name][rest] = upcast(value)
        elif not key.startswith(_PERCEPTUAL_PREFIX):
            raise CheckpointError(f"{source}: unexpected key {key} in a training checkpoint")
    if not tokenizer:
        raise CheckpointError(f"{source}: no '{_TRAINING_PREFIX}' keys; is this a training checkpoint?")
    return tokenizer, {k: v for k, v in discriminators.items() if v}


def convert_state_dict(
    state: Mapping[str, torch.Tensor], model: BTB3D, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Map a released tokenizer state dict (no prefix) onto `model`'s keys, key by key, strictly."""
    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}
    for key in model.state_dict():
        src = source_key(key)
        if src not in state:
            raise CheckpointError(f"{source}: missing key {src} (for {key})")
        out[key] = upcast(state[src])
        used.add(src)
    if _MASK_KEY not in state:
        raise CheckpointError(f"{source}: missing key {_MASK_KEY}")
    expected = bit_weights(model.config.token_bits)
    mask = state[_MASK_KEY]
    if mask.shape != expected.shape or not torch.equal(mask.long(), expected):
        raise CheckpointError(
            f"{source}: {_MASK_KEY} {mask.tolist()} is not the {model.config.token_bits}-bit mask {expected.tolist()}"
        )
    used.add(_MASK_KEY)
    unexpected = sorted(set(state) - used)
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key {format_keys(unexpected, limit=1)}")
    check_state_dict(model, out, source)
    return out


def infer_config(state: Mapping[str, torch.Tensor], source: str = "checkpoint", **overrides) -> BTB3DConfig:
    """Read the architecture off a released tokenizer state dict (widths, stages, blocks, token bits).

    The temporal downsampling pattern is not visible in the weights of the encoder, but it is in the decoder's
    upsampling convs (4 * t_stride * width outputs each).
    """
    try:
        filters = state["encoder.conv_first.conv.weight"].shape[0]
        token_bits = state["encoder.conv_last.conv.weight"].shape[0]
        in_channels = state["encoder.conv_first.conv.weight"].shape[1] // 8
    except KeyError as err:
        raise CheckpointError(f"{source}: missing key {err.args[0]}; not a BTB3D tokenizer state dict") from None
    stages = sorted({int(m.group(1)) for k in state if (m := re.match(r"encoder\.res_blocks\.res_block_(\d+)\.", k))})
    widths = [state[f"encoder.res_blocks.res_block_{i}.res_block_{i}_0.conv_0.conv.weight"].shape[0] for i in stages]
    final = r"encoder\.res_blocks\.res_block_final\.res_block_final_(\d+)\."
    blocks = {int(m.group(1)) for k in state if (m := re.match(final, k))}
    temporal = []
    for s in range(len(stages) - 1):
        weight = state[f"decoder.conv_upsample_blocks.conv_upsample_{s}.conv1.conv.weight"]
        temporal.append(weight.shape[0] // (4 * weight.shape[1]) == 2)
    values = {
        "in_channels": in_channels,
        "filters": filters,
        "channel_multipliers": tuple(w // filters for w in widths),
        "temporal_downsample": tuple(reversed(temporal)),
        "num_res_blocks": len(blocks),
        "token_bits": token_bits,
        **overrides,
    }
    try:
        return BTB3DConfig(**values)
    except ValueError as err:
        raise CheckpointError(f"{source}: unsupported architecture: {err}") from None


def load_released(
    path: str | os.PathLike,
    *,
    layout: Literal["auto", "tokenizer", "training"] = "auto",
    config: BTB3DConfig | None = None,
) -> tuple[BTB3D, dict[str, dict[str, torch.Tensor]]]:
    """Load a released BTB3D checkpoint file as our `BTB3D` (float32, strict).

    Returns the model and the discriminator state dicts of a training checkpoint ({} otherwise), keyed
    "discriminator" (3D) and "discriminator_2d", in the key layout of `vision.btb3d.discriminators`.
    """
    path = Path(path)
    state = load_tensors(path)
    tokenizer, discriminators = split_training_layout(state, layout, str(path))
    config = config or infer_config(tokenizer, str(path))
    model = BTB3D(config)
    model.load_state_dict(convert_state_dict(tokenizer, model, str(path)), strict=True)
    return model, discriminators
