"""Model presets: every released HyenaDNA and Caduceus size, plus tiny presets for tests.

A preset is an explicit config; ``build(name)`` gives a randomly initialised model. Released weights come
from checkpoint directories (`genomics.from_pretrained`).
"""

from __future__ import annotations

from genomics.models.hyenadna import HyenaDNA, HyenaDNAConfig

# The LongSafari/hyenadna-* releases (anchors: n_layer, d_model, max_seq_len; d_inner = 4 d_model).
PRESETS: dict[str, HyenaDNAConfig] = {
    "hyenadna-tiny-1k": HyenaDNAConfig(n_layer=2, d_model=128, max_seq_len=1026),
    "hyenadna-tiny-1k-d256": HyenaDNAConfig(n_layer=2, d_model=256, max_seq_len=1026),
    "hyenadna-tiny-16k-d128": HyenaDNAConfig(n_layer=2, d_model=128, max_seq_len=16386),
    "hyenadna-small-32k": HyenaDNAConfig(n_layer=4, d_model=256, max_seq_len=32770),
    "hyenadna-medium-160k": HyenaDNAConfig(n_layer=8, d_model=256, max_seq_len=160002),
    "hyenadna-medium-450k": HyenaDNAConfig(n_layer=8, d_model=256, max_seq_len=450002),
    "hyenadna-large-1m": HyenaDNAConfig(n_layer=8, d_model=256, max_seq_len=1000002),
    # Tiny presets for tests and quick experiments.
    "hyenadna-test": HyenaDNAConfig(n_layer=2, d_model=16, max_seq_len=256, filter_order=16),
}

MODEL_CLASSES = {"hyenadna": (HyenaDNAConfig, HyenaDNA)}


def build(name: str):
    """A randomly initialised model from a preset name."""
    if name not in PRESETS:
        raise KeyError(name)
    config = PRESETS[name]
    return MODEL_CLASSES[config_model_type(config)][1](config)


def config_model_type(config) -> str:
    for model_type, (config_cls, _) in MODEL_CLASSES.items():
        if isinstance(config, config_cls):
            return model_type
    raise TypeError(f"not a genomics config: {type(config).__name__}")
