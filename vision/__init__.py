"""Vision: one subpackage per model family.

- `longseq.vision.local_mamba`: LocalVim and LocalVMamba backbones; importing it registers them with timm.
- `longseq.vision.vl_mamba`: the VL-Mamba multimodal assistant.
- `longseq.vision.btb3d`: the BTB3D volumetric (CT) tokenizer; needs neither timm nor lightning.

This package imports none of them, so ``import longseq.vision.btb3d`` does not import timm.
"""
