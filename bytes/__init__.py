"""Byte-level language models: MEGABYTE and MBLM on `core.hierarchical`.

    import bytes                     # from user code; inside the project write `from bytes.models import ...`
    model = bytes.from_pretrained("mblm-small-tt")    # a preset, or a checkpoint directory
    logits = model(ids)                              # ids (b, l) int64 in [0, 256) -> next-byte logits (b, l, 256)

Never ``import bytes`` inside the project: the bare name would shadow the builtin in that module.
"""

from bytes.models import PRESETS, from_pretrained

__all__ = ["PRESETS", "from_pretrained"]
