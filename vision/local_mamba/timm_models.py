"""timm entry points for LocalVim and LocalVMamba: ``timm.create_model("localvim_tiny", ...)`` after
``import longseq.vision.local_mamba``.

Each preset of `longseq.vision.local_mamba.presets` is registered under its name. Pretrained configs point to the
released files in the local weights directory (``$LONGSEQ_WEIGHTS``, default ``~/.cache/longseq/weights``; nothing
is downloaded); another file is given with ``pretrained_cfg_overlay=dict(file=...)``. They load through
`longseq.vision.local_mamba.convert` (safe unpickling, key map, key-by-key check) via timm's ``custom_load`` hook; a
state dict given as ``pretrained_cfg_overlay=dict(state_dict=...)`` goes through `checkpoint_filter_fn`.
``features_only`` uses ``forward_intermediates`` (timm's feature getter).
"""

from __future__ import annotations

import dataclasses

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from longseq.vision.local_mamba.convert import checkpoint_filter_fn
from longseq.vision.local_mamba.local_vim import LocalVim, LocalVimConfig
from longseq.vision.local_mamba.local_vmamba import LocalVMamba
from longseq.vision.local_mamba.mixers import img_pair
from longseq.vision.local_mamba.presets import PRESETS, RELEASE_FILES, RELEASE_URL, weights_dir


def _cfg(name: str, **kwargs) -> dict:
    release = RELEASE_FILES.get(name)
    vim = isinstance(PRESETS[name], LocalVimConfig)
    cfg = {
        "num_classes": PRESETS[name].num_classes,
        "input_size": (PRESETS[name].in_chans, *img_pair(PRESETS[name].img_size)),
        "pool_size": None,
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj",
        "classifier": "head" if vim else "head.fc",
        "license": "apache-2.0",
        "paper_ids": "arXiv:2403.09338",
        "custom_load": True,  # files load through `convert.load_release_file` (model.load_pretrained)
    }
    if release:
        cfg.update(file=str(weights_dir() / release), origin_url=RELEASE_URL + release)
    return {**cfg, **kwargs}


default_cfgs = generate_default_cfgs(
    {f"{name}.in1k" if name in RELEASE_FILES else name: _cfg(name) for name in PRESETS}
)


def _create(variant: str, pretrained: bool, **kwargs):
    overlay = kwargs.get("pretrained_cfg_overlay")
    if overlay and overlay.get("file"):
        # timm resets custom_load for a user-given file; our files still go through convert.load_release_file
        kwargs["pretrained_cfg_overlay"] = {"custom_load": True, **overlay}
    config = PRESETS[variant]
    vim = isinstance(config, LocalVimConfig)
    args = {**dataclasses.asdict(config), **kwargs}
    if vim:
        feature_cfg = {"feature_cls": "getter", "out_indices": min(4, args["depth"])}
    else:
        feature_cfg = {"feature_cls": "getter", "out_indices": tuple(range(len(args["depths"])))}
    return build_model_with_cfg(
        LocalVim if vim else LocalVMamba,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=feature_cfg,
        **args,
    )


@register_model
def localvim_tiny(pretrained: bool = False, **kwargs):
    """LocalVim-T (RoPE, mean pool), searched directions; 8M parameters, 76.2 % ImageNet top-1 released."""
    return _create("localvim_tiny", pretrained, **kwargs)


@register_model
def localvim_tiny_middle_cls_token(pretrained: bool = False, **kwargs):
    """LocalVim-T with a middle class token and no RoPE; 77.8 % top-1 released."""
    return _create("localvim_tiny_middle_cls_token", pretrained, **kwargs)


@register_model
def localvim_small(pretrained: bool = False, **kwargs):
    """LocalVim-S (dim 384), searched directions; no released weights."""
    return _create("localvim_small", pretrained, **kwargs)


@register_model
def localvim_tiny_search(pretrained: bool = False, **kwargs):
    """The LocalVim search supernet: all eight directions per layer with learnable weights (dim 128)."""
    return _create("localvim_tiny_search", pretrained, **kwargs)


@register_model
def localvmamba_tiny(pretrained: bool = False, **kwargs):
    """LocalVMamba-T (depths 2-2-9-2), searched directions; no released weights (upstream is retraining)."""
    return _create("localvmamba_tiny", pretrained, **kwargs)


@register_model
def localvmamba_small(pretrained: bool = False, **kwargs):
    """LocalVMamba-S (depths 2-2-27-2), searched directions; 83.7 % top-1 released."""
    return _create("localvmamba_small", pretrained, **kwargs)


@register_model
def localvmamba_tiny_search(pretrained: bool = False, **kwargs):
    """The LocalVMamba-T search supernet (dims 32-256)."""
    return _create("localvmamba_tiny_search", pretrained, **kwargs)


@register_model
def localvmamba_small_search(pretrained: bool = False, **kwargs):
    """The LocalVMamba-S search supernet (dims 32-256)."""
    return _create("localvmamba_small_search", pretrained, **kwargs)


@register_model
def localvim_test(pretrained: bool = False, **kwargs):
    """A tiny LocalVim for tests (32x32 images, 2 layers)."""
    return _create("localvim_test", pretrained, **kwargs)


@register_model
def localvim_test_search(pretrained: bool = False, **kwargs):
    """A tiny LocalVim supernet for tests."""
    return _create("localvim_test_search", pretrained, **kwargs)


@register_model
def localvmamba_test(pretrained: bool = False, **kwargs):
    """A tiny LocalVMamba for tests (2 stages of 1 block)."""
    return _create("localvmamba_test", pretrained, **kwargs)


@register_model
def localvmamba_test_search(pretrained: bool = False, **kwargs):
    """A tiny LocalVMamba supernet for tests."""
    return _create("localvmamba_test_search", pretrained, **kwargs)


@register_model
def localvim_fmnist(pretrained: bool = False, **kwargs):
    """A small LocalVim for 28x28 grey images (Fashion-MNIST), local directions (h, h_flip, w2, w2_flip)."""
    return _create("localvim_fmnist", pretrained, **kwargs)


@register_model
def localvim_fmnist_search(pretrained: bool = False, **kwargs):
    """The search supernet of `localvim_fmnist`."""
    return _create("localvim_fmnist_search", pretrained, **kwargs)
