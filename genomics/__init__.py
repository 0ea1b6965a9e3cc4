"""Long-range DNA models: HyenaDNA and Caduceus, their official checkpoints, training and embeddings.

    import longseq
    model = longseq.from_pretrained("path/to/hyenadna-small-32k-seqlen-hf")   # or our format, or a preset
    logits = model(input_ids)                                                  # (b, l) -> (b, l, 16)

Importing the package is cheap (torch loads on first use), so ``dna --help`` is instant.
"""
