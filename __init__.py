"""longseq: long-sequence models (Mamba, Hyena, hierarchical transformers) for genomics, speech, vision and bytes.

Installed, the repository's folders are the subpackages of this one package:

    longseq.kernels    selective scan, causal conv1d, SSD, FFT conv, fused add-norm (reference, torch, Triton)
    longseq.core       Mamba / Mamba-2, Hyena, attention, hierarchical patch decoders, causal LMs, training
    longseq.genomics   HyenaDNA, Caduceus             (`dna`)
    longseq.speech     VALL-E 2, CLaM-TTS, SpeechSSM  (`tts`)
    longseq.vision     LocalMamba, VL-Mamba, BTB3D    (`vision`)
    longseq.bytes      MEGABYTE, MBLM                 (`bytelm`)
"""

__version__ = "0.1.0"

__all__ = ["from_pretrained", "list_models"]


def __getattr__(name: str):
    # `longseq.from_pretrained` and `longseq.list_models` import torch only when first used, so that the
    # command-line tools answer --help at once.
    if name in __all__:
        from longseq.core import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'longseq' has no attribute {name!r}")
