"""HyenaDNA, Caduceus and the sequence classifier on either. Each model module lists its presets; load any preset
or checkpoint with ``longseq.from_pretrained``."""
