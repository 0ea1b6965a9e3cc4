"""MEGABYTE and MBLM over bytes. Each family (model, config, presets) is declared beside its model class and
loaded through `longseq.from_pretrained` (a preset or a checkpoint directory of either)."""

from longseq.bytes.models.base import ByteLM
from longseq.bytes.models.mblm import MBLM, MBLMConfig, StageConfig
from longseq.bytes.models.megabyte import Megabyte, MegabyteConfig

__all__ = ["MBLM", "ByteLM", "MBLMConfig", "Megabyte", "MegabyteConfig", "StageConfig"]
