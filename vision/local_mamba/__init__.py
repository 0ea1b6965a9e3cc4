"""LocalMamba (LocalVim, LocalVMamba): vision backbones that scan the patch grid in local windows.

Importing this package registers the models with timm (`longseq.vision.local_mamba.timm_models`), so that
``timm.create_model("localvim_tiny")`` works after ``import longseq.vision.local_mamba``.
"""

from longseq.vision.local_mamba import timm_models  # noqa: F401  (registers the models with timm)
from longseq.vision.local_mamba.local_vim import LocalVim, LocalVimConfig
from longseq.vision.local_mamba.local_vmamba import LocalVMamba, LocalVMambaConfig

__all__ = ["LocalVMamba", "LocalVMambaConfig", "LocalVim", "LocalVimConfig"]
