"""Long-range DNA models: HyenaDNA and Caduceus, their official checkpoints, training and embeddings.

    model = genomics.from_pretrained("path/to/hyenadna-small-32k-seqlen-hf")   # or our format, or a preset
    logits = model(input_ids)                                                   # (b, l) -> (b, l, 16)

Importing the package is cheap (torch loads on first use), so ``dna --help`` is instant.
"""

from __future__ import annotations


def from_pretrained(path_or_preset, **kwargs):
    """Load a HyenaDNA (HF or original directory) or Caduceus (HF) checkpoint, our format, or a preset.

    See `genomics.convert.from_pretrained`.
    """
    from longseq.genomics.convert import from_pretrained as load

    return load(path_or_preset, **kwargs)
