"""VL-Mamba: a timm vision tower, a (VSS) connector and a Mamba language model, trained in two stages."""

from longseq.vision.vl_mamba.model import VLMamba, VLMambaConfig

__all__ = ["VLMamba", "VLMambaConfig"]
