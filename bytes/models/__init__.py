"""Byte-level model presets (explicit configs, tiny ones for tests) and the MBLM and MEGABYTE families
(`longseq.from_pretrained` loads a preset or a checkpoint directory of either)."""

from __future__ import annotations

from longseq.bytes.models.base import ByteLM
from longseq.bytes.models.mblm import MBLM, MBLMConfig, StageConfig
from longseq.bytes.models.megabyte import Megabyte, MegabyteConfig
from longseq.core.registry import Family

PRESETS: dict[str, MBLMConfig | MegabyteConfig] = {
    # Tiny models for tests and the demo.
    "mblm-tiny": MBLMConfig(
        stages=[
            StageConfig(d_model=32, n_layers=1, seq_len=16, num_heads=2),
            StageConfig(d_model=32, n_layers=1, seq_len=4, num_heads=2),
        ]
    ),
    "mblm-tiny-3stage": MBLMConfig(
        stages=[
            StageConfig(mixer="mamba", d_model=32, n_layers=1, seq_len=8, mlp_ratio=0.0),
            StageConfig(d_model=32, n_layers=1, seq_len=4, num_heads=2),
            StageConfig(d_model=16, n_layers=1, seq_len=4, num_heads=2),
        ],
        train_checkpoint_chunks=[2, 2],
    ),
    "megabyte-tiny": MegabyteConfig(
        patch_size=4,
        max_patches=16,
        d_global_byte=8,
        n_layers_global=1,
        num_heads_global=2,
        d_local=16,
        n_layers_local=1,
        num_heads_local=2,
    ),
    # The `make demo` model: learns this repository's sources in a couple of minutes on a CPU.
    "mblm-demo": MBLMConfig(
        stages=[
            StageConfig(d_model=96, n_layers=2, seq_len=64, num_heads=4),
            StageConfig(d_model=64, n_layers=1, seq_len=8, num_heads=4),
        ]
    ),
    # Small CPU-trainable models with a 4 KiB context, named as MBLM's configs (t: transformer, s: Mamba stage).
    "mblm-small-tt": MBLMConfig(
        stages=[
            StageConfig(d_model=256, n_layers=4, seq_len=512, num_heads=8),
            StageConfig(d_model=128, n_layers=2, seq_len=8, num_heads=4),
        ]
    ),
    "mblm-small-st": MBLMConfig(
        stages=[
            StageConfig(mixer="mamba", d_model=256, n_layers=4, seq_len=512, mlp_ratio=0.0),
            StageConfig(d_model=128, n_layers=2, seq_len=8, num_heads=4),
        ]
    ),
    "megabyte-small": MegabyteConfig(
        patch_size=8,
        max_patches=512,
        d_global_byte=32,
        n_layers_global=4,
        num_heads_global=8,
        d_local=128,
        n_layers_local=2,
        num_heads_local=4,
    ),
    # A three-stage model with a 1,048,576-byte context (MBLM's 1M layout: seq_lens 8192 x 16 x 8).
    "mblm-1m": MBLMConfig(
        stages=[
            StageConfig(mixer="mamba", d_model=128, n_layers=2, seq_len=8192, mlp_ratio=0.0),
            StageConfig(d_model=64, n_layers=1, seq_len=16, num_heads=4),
            StageConfig(d_model=64, n_layers=1, seq_len=8, num_heads=4),
        ],
        train_checkpoint_chunks=[8, 32],
    ),
}

# model_type in config.json -> (config class, model class)
MODEL_TYPES: dict[str, tuple[type, type[ByteLM]]] = {
    MBLM.model_type: (MBLMConfig, MBLM),
    Megabyte.model_type: (MegabyteConfig, Megabyte),
}


def build(config: MBLMConfig | MegabyteConfig) -> ByteLM:
    """A randomly initialised model for a config."""
    return MBLM(config) if isinstance(config, MBLMConfig) else Megabyte(config)


MBLM_FAMILY = Family(
    model_class=MBLM,
    config_class=MBLMConfig,
    presets={name: config for name, config in PRESETS.items() if isinstance(config, MBLMConfig)},
)
MEGABYTE_FAMILY = Family(
    model_class=Megabyte,
    config_class=MegabyteConfig,
    presets={name: config for name, config in PRESETS.items() if isinstance(config, MegabyteConfig)},
)


__all__ = [
    "MBLM",
    "PRESETS",
    "ByteLM",
    "MBLMConfig",
    "Megabyte",
    "MegabyteConfig",
    "StageConfig",
    "build",
]
