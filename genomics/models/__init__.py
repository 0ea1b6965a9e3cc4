"""Model presets: every released HyenaDNA and Caduceus size, plus tiny presets for tests.

A preset is an explicit config; ``build(name)`` gives a randomly initialised model. Released weights come
from checkpoint directories (`genomics.from_pretrained`).
"""

from __future__ import annotations

import dataclasses

from torch import nn

from longseq.genomics.models.caduceus import Caduceus, CaduceusConfig
from longseq.genomics.models.classifier import ClassifierConfig, SequenceClassifier
from longseq.genomics.models.hyenadna import HyenaDNA, HyenaDNAConfig

PRESETS: dict[str, HyenaDNAConfig | CaduceusConfig] = {
    # LongSafari/hyenadna-*-seqlen(-hf): n_layer, d_model, max_seq_len (d_inner = 4 d_model).
    "hyenadna-tiny-1k": HyenaDNAConfig(n_layer=2, d_model=128, max_seq_len=1026),
    "hyenadna-tiny-1k-d256": HyenaDNAConfig(n_layer=2, d_model=256, max_seq_len=1026),
    "hyenadna-tiny-16k-d128": HyenaDNAConfig(n_layer=2, d_model=128, max_seq_len=16386),
    "hyenadna-small-32k": HyenaDNAConfig(n_layer=4, d_model=256, max_seq_len=32770),
    "hyenadna-medium-160k": HyenaDNAConfig(n_layer=8, d_model=256, max_seq_len=160002),
    "hyenadna-medium-450k": HyenaDNAConfig(n_layer=8, d_model=256, max_seq_len=450002),
    "hyenadna-large-1m": HyenaDNAConfig(n_layer=8, d_model=256, max_seq_len=1000002),
    # kuleshov-group/caduceus-{ps,ph}_seqlen-*_d_model-*_n_layer-*.
    "caduceus-ps-131k": CaduceusConfig(rcps=True, d_model=256, n_layer=16, max_seq_len=131072),
    "caduceus-ph-131k": CaduceusConfig(rcps=False, d_model=256, n_layer=16, max_seq_len=131072),
    "caduceus-ps-1k-d256": CaduceusConfig(rcps=True, d_model=256, n_layer=4, max_seq_len=1024),
    "caduceus-ph-1k-d256": CaduceusConfig(rcps=False, d_model=256, n_layer=4, max_seq_len=1024),
    "caduceus-ps-1k-d118": CaduceusConfig(rcps=True, d_model=118, n_layer=4, max_seq_len=1024),
    "caduceus-ph-1k-d118": CaduceusConfig(rcps=False, d_model=118, n_layer=4, max_seq_len=1024),
    # Tiny presets for tests and quick experiments.
    "hyenadna-test": HyenaDNAConfig(n_layer=2, d_model=16, max_seq_len=256, filter_order=16),
    "caduceus-ps-test": CaduceusConfig(rcps=True, d_model=16, n_layer=2, d_state=4, max_seq_len=256),
    "caduceus-ph-test": CaduceusConfig(rcps=False, d_model=16, n_layer=2, d_state=4, max_seq_len=256),
}

# model_type (config.json) -> (config class, model class).
MODEL_CLASSES: dict[str, tuple[type, type[nn.Module]]] = {
    "hyenadna": (HyenaDNAConfig, HyenaDNA),
    "caduceus": (CaduceusConfig, Caduceus),
    "dna_classifier": (ClassifierConfig, SequenceClassifier),
}


def model_class(config: HyenaDNAConfig | CaduceusConfig) -> type[nn.Module]:
    """The model class a config builds."""
    return HyenaDNA if isinstance(config, HyenaDNAConfig) else Caduceus


def build(name: str, **changes) -> nn.Module:
    """A randomly initialised model from a preset, with config fields changed by ``changes``."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    config = dataclasses.replace(PRESETS[name], **changes)
    return model_class(config)(config)
