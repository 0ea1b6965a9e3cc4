"""Audio codecs behind one interface (`Codec`): EnCodec 24 kHz and the project's trainable mel codec.

A codec is named by a spec string: ``encodec`` (6 kbps, 8 codebooks), ``encodec-<kbps>kbps`` (1.5, 3, 6, 12,
24), or the directory of a trained mel codec or Mel-VAE (our checkpoint format).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from longseq.core.checkpoint import CheckpointError, read_config
from longseq.speech.codecs.base import Codec


def load_codec(spec: str, *, encodec_weights: str | os.PathLike | None = None, root: Path | None = None) -> Codec:
    """The codec a spec names; a relative directory is looked up under ``root`` first (a model directory).

    Args:
        spec: ``encodec``, ``encodec-<kbps>kbps`` or a mel codec directory.
        encodec_weights: the official EnCodec ``.th`` file or its directory (default: the torch hub cache).
        root: where relative codec directories live (the model checkpoint that names the codec).
    """
    named = re.fullmatch(r"encodec(?:-([\d.]+)kbps)?", spec)
    if named:
        from longseq.speech.codecs.encodec import EncodecCodec

        return EncodecCodec(bandwidth=float(named.group(1) or 6.0), weights=encodec_weights)
    path = Path(spec)
    if root is not None and not path.is_absolute() and (root / path).is_dir():
        path = root / path
    if not path.is_dir():
        raise CheckpointError(f"unknown codec {spec!r}: expected 'encodec', 'encodec-<kbps>kbps' or a codec directory")
    model_type = read_config(path).get("model_type")
    if model_type == "mel_vae":
        from longseq.speech.codecs.mel_vae import MelVAE

        return MelVAE.from_pretrained(path)
    if model_type != "mel_codec":
        raise CheckpointError(f"{path} holds a {model_type!r} model, not a codec")
    from longseq.speech.codecs.mel import MelCodec

    return MelCodec.from_pretrained(path)


__all__ = ["Codec", "load_codec"]
