"""The BTB3D family and the released checkpoint files it reads (Hugging Face ``Forithmuscom/BTB3D``).

``longseq.from_pretrained("iter_42000_fixed.ckpt")`` opens either single-file layout (a ``.ckpt`` / ``.pt`` torch
pickle or a ``.safetensors`` file, holding a flat state dict):

- ``btb3d-tokenizer``: the state dict of ``VisionTokenizer.tokenizer`` (the released ``iter_*_fixed.ckpt``):
  ``encoder.*``, ``decoder.*``, ``quantize.mask``.
- ``btb3d-training``: the whole ``VisionTokenizer`` of a training run (``iter_N.ckpt``, accelerate's
  ``model.safetensors``): the same keys under ``tokenizer.``, plus ``discriminator.*`` (3D), ``discriminator_2d.*``
  and, with the perceptual loss, ``perceptual_model.*`` (VGG16); these are not the tokenizer and are dropped.

The architecture is read off the weights (widths, stages, blocks, token bits; the temporal pattern from the
decoder's upsampling convs), so the official ``config.yaml`` is not needed. What the weights cannot tell is an
override: ``norm_groups`` (32 in the release), ``window_size`` (encoding windows, 5 wavelet frames) and the
quantizer's training weights. Training runs store bf16; everything is upcast to float32. Keys are renamed by
`KeyMap` rules (an unmapped or missing key is a one-line `CheckpointError`) and the ``quantize.mask`` bit order
is checked against ours. Quirk of the released encoder: block j >= 1 of every stage is named ``res_block_0_{j}``
whatever the stage (``encoder.res_blocks.res_block_2.res_block_0_3...``); the decoder uses ``res_block_{s}_{j}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from longseq.core.checkpoint import CheckpointError
from longseq.core.keymap import KeyMap
from longseq.core.registry import Family, Layout, Source
from longseq.vision.btb3d.lfq import bit_weights
from longseq.vision.btb3d.model import BTB3D, BTB3D_PRESETS, BTB3DConfig

# Inside a res block: the released name -> ours (every released conv sits in a causal wrapper: `.conv.`).
_RES_NAMES = [
    (r"norm_0\.norm_fn\.(?P<p>weight|bias)", r"norm1.\g<p>"),
    (r"conv_0\.conv\.weight", "conv1.weight"),
    (r"norm_1\.norm_fn\.(?P<p>weight|bias)", r"norm2.\g<p>"),
    (r"conv_1\.conv\.weight", "conv2.weight"),
    (r"conv_shortcut\.conv\.weight", "shortcut.weight"),
]
# Where res blocks sit: the released prefix -> ours (i: stage, j: block).
_RES_BLOCKS = [
    (r"encoder\.res_blocks\.res_block_(?P<i>\d+)\.res_block_(?P=i)_(?P<j>0)\.", r"encoder.stages.\g<i>.blocks.\g<j>."),
    (
        r"encoder\.res_blocks\.res_block_(?P<i>\d+)\.res_block_0_(?P<j>[1-9]\d*)\.",
        r"encoder.stages.\g<i>.blocks.\g<j>.",
    ),
    (r"encoder\.res_blocks\.res_block_final\.res_block_final_(?P<j>\d+)\.", r"encoder.mid.\g<j>."),
    (r"decoder\.res_blocks\.res_block_pre\.res_block_pre_(?P<j>\d+)\.", r"decoder.mid.\g<j>."),
    (
        r"decoder\.res_blocks\.res_block_(?P<i>\d+)\.res_block_(?P=i)_(?P<j>\d+)\.",
        r"decoder.stages.\g<i>.blocks.\g<j>.",
    ),
]
_OTHER = [
    (r"encoder\.conv_first\.conv\.(weight|bias)", r"encoder.conv_in.\1"),
    (
        r"encoder\.conv_downsample_blocks\.conv_downsample_(\d+)\.conv\.(weight|bias)",
        r"encoder.stages.\1.downsample.\2",
    ),
    (r"encoder\.final_norm\.norm_fn\.(weight|bias)", r"encoder.norm_out.\1"),
    (r"encoder\.conv_last\.conv\.(weight|bias)", r"encoder.conv_out.\1"),
    (r"decoder\.conv_first\.conv\.(weight|bias)", r"decoder.conv_in.\1"),
    (r"decoder\.cond_norm_layers\.cond_norm_(\d+)\.(gamma|beta)\.(weight|bias)", r"decoder.stages.\1.cond_norm.\2.\3"),
    (
        r"decoder\.conv_upsample_blocks\.conv_upsample_(\d+)\.conv1\.conv\.(weight|bias)",
        r"decoder.stages.\1.upsample.\2",
    ),
    (r"decoder\.final_norm\.norm_fn\.(weight|bias)", r"decoder.norm_out.\1"),
    (r"decoder\.conv_last\.conv\.(weight|bias)", r"decoder.conv_out.\1"),
]
MASK_KEY = "quantize.mask"
TRAINING_PREFIX = "tokenizer."


def _rules(prefix: str) -> list[tuple[str, str]]:
    """The rename rules for the tokenizer's keys under ``prefix`` (a regex)."""
    rules = [(prefix + pattern, ours) for pattern, ours in _OTHER]
    rules += [
        (prefix + block + name, ours_block + ours_name)
        for block, ours_block in _RES_BLOCKS
        for name, ours_name in _RES_NAMES
    ]
    return rules


TOKENIZER_KEYS = KeyMap(rules=_rules(""), drop=[re.escape(MASK_KEY)])
TRAINING_KEYS = KeyMap(
    rules=_rules(re.escape(TRAINING_PREFIX)),
    drop=[
        re.escape(TRAINING_PREFIX + MASK_KEY),
        r"discriminator\..+",
        r"discriminator_2d\..+",
        r"perceptual_model\..+",
    ],
)
# BTB3DConfig fields the weights do not determine.
OVERRIDES = ("norm_groups", "window_size", "commitment_weight", "diversity_gamma")


def infer_config(state: Mapping[str, torch.Tensor], source: str, **overrides) -> BTB3DConfig:
    """Read the architecture off a released tokenizer state dict (unprefixed keys), plus ``overrides``.

    The temporal downsampling pattern is not visible in the weights of the encoder, but it is in the decoder's
    upsampling convs (4 * t_stride * width outputs each).
    """
    try:
        conv_in = state["encoder.conv_first.conv.weight"]
        stages = sorted({int(m[1]) for k in state if (m := re.match(r"encoder\.res_blocks\.res_block_(\d+)\.", k))})
        widths = [
            state[f"encoder.res_blocks.res_block_{i}.res_block_{i}_0.conv_0.conv.weight"].shape[0] for i in stages
        ]
        upsample = [
            state[f"decoder.conv_upsample_blocks.conv_upsample_{s}.conv1.conv.weight"] for s in range(len(stages) - 1)
        ]
        values = {
            "in_channels": conv_in.shape[1] // 8,
            "filters": conv_in.shape[0],
            "channel_multipliers": tuple(width // conv_in.shape[0] for width in widths),
            "temporal_downsample": tuple(reversed([w.shape[0] // (4 * w.shape[1]) == 2 for w in upsample])),
            "num_res_blocks": len(
                {k.split(".")[3] for k in state if k.startswith("encoder.res_blocks.res_block_final.")}
            ),
            "token_bits": state["encoder.conv_last.conv.weight"].shape[0],
        }
    except KeyError as err:
        raise CheckpointError(f"{source}: missing key {err.args[0]}; not a BTB3D tokenizer state dict") from None
    try:
        return BTB3DConfig(**values, **overrides)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: unsupported architecture: {err}") from None


def _is_state_dict(contents, key: str) -> bool:
    return (
        isinstance(contents, Mapping)
        and key in contents
        and all(isinstance(v, torch.Tensor) for v in contents.values())
    )


def _load(source: Source, keys: KeyMap, prefix: str, overrides: dict) -> BTB3D:
    """A released file as our `BTB3D`: config from the weights (+ overrides), bit order checked, keys renamed."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in source.contents.items()}
    tokenizer = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    config = infer_config(tokenizer, str(source), **overrides)
    mask, expected = tokenizer.get(MASK_KEY), bit_weights(config.token_bits)
    if mask is None:
        raise CheckpointError(f"{source}: missing key {prefix}{MASK_KEY}")
    if mask.shape != expected.shape or not torch.equal(mask.long(), expected):
        raise CheckpointError(
            f"{source}: {prefix}{MASK_KEY} {mask.tolist()} is not the {config.token_bits}-bit mask {expected.tolist()}"
        )
    return keys.load(BTB3D(config), state, str(source))


def load_tokenizer_file(source: Source, **overrides) -> BTB3D:
    return _load(source, TOKENIZER_KEYS, "", overrides)


def load_training_file(source: Source, **overrides) -> BTB3D:
    return _load(source, TRAINING_KEYS, TRAINING_PREFIX, overrides)


def _example(model: BTB3D) -> tuple[torch.Tensor]:
    """One encoding window (9 slices) of a 2x2-token volume."""
    _, height, width = model.config.compression
    return (torch.randn(1, model.config.in_channels, 9, 2 * height, 2 * width),)


FAMILY = Family(
    model_class=BTB3D,
    config_class=BTB3DConfig,
    presets=BTB3D_PRESETS,
    example=_example,
    layouts=(
        Layout(
            "btb3d-tokenizer",
            lambda source: _is_state_dict(source.contents, "encoder.conv_first.conv.weight"),
            load_tokenizer_file,
            files=True,
            overrides=OVERRIDES,
        ),
        Layout(
            "btb3d-training",
            lambda source: _is_state_dict(source.contents, TRAINING_PREFIX + "encoder.conv_first.conv.weight"),
            load_training_file,
            files=True,
            overrides=OVERRIDES,
        ),
    ),
)
