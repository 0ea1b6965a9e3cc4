"""Byte-level language models: MEGABYTE and MBLM on `core.hierarchical`.

    import longseq
    model = longseq.from_pretrained("mblm-small-tt")  # a preset, or a checkpoint directory
    logits = model(ids)                     # ids (b, l) int64 in [0, 256) -> next-byte logits (b, l, 256)

Write ``import longseq.bytes`` rather than ``from longseq import bytes``: the bare name would shadow the builtin.
"""

from longseq.bytes.models import MBLM, ByteLM, MBLMConfig, Megabyte, MegabyteConfig, StageConfig

__all__ = ["MBLM", "ByteLM", "MBLMConfig", "Megabyte", "MegabyteConfig", "StageConfig"]
