"""BTB3D: a frequency-aware tokenizer for CT volumes (Haar transform, causal 3D convolutions, lookup-free
quantization). Imports neither timm nor lightning."""

from longseq.vision.btb3d.model import BTB3D, BTB3DConfig

__all__ = ["BTB3D", "BTB3DConfig"]
