"""VL-Mamba: a timm vision tower, a (VSS) connector and a Mamba language model, trained in two stages.

The model loads on first use of ``VLMamba`` / ``VLMambaConfig`` (it imports timm), so that the light modules here
(`data_config`) leave ``vision --help`` quick.
"""

__all__ = ["VLMamba", "VLMambaConfig"]


def __getattr__(name: str):
    if name in __all__:
        from longseq.vision.vl_mamba import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
