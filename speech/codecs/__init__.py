"""Audio codecs behind one interface (`Codec`): EnCodec 24 kHz and the project's trainable mel codecs.

Every command names a codec the same way (``--codec``): ``encodec`` (6 kbps, 8 codebooks) or
``encodec-<kbps>kbps`` (1.5, 3, 6, 12, 24) for EnCodec, whose official weights are read through the ``encodec``
package; anything else is what `longseq.from_pretrained` opens, and must be a codec: the directory of a trained
mel codec or Mel-VAE (our checkpoint format).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from longseq.core.checkpoint import CheckpointError
from longseq.speech.codecs.base import Codec


def load_codec(spec: str, *, encodec_weights: str | os.PathLike | None = None, root: Path | None = None) -> Codec:
    """The codec a spec names, in eval mode; a relative directory is looked up under ``root`` first.

    Args:
        spec: ``encodec``, ``encodec-<kbps>kbps`` or a codec checkpoint directory.
        encodec_weights: the official EnCodec ``.th`` file or its directory (default: the torch hub cache).
        root: where relative codec directories live (the model checkpoint that names its codec).

    Raises:
        CheckpointError: no such codec, or a checkpoint that is not a codec (one line).
    """
    named = re.fullmatch(r"encodec(?:-([\d.]+)kbps)?", spec)
    if named:
        from longseq.speech.codecs.encodec import EncodecCodec

        try:
            return EncodecCodec(bandwidth=float(named.group(1) or 6.0), weights=encodec_weights)
        except ValueError as err:  # a bandwidth EnCodec does not have
            raise CheckpointError(f"codec {spec!r}: {err}") from None
    from longseq.core.registry import load_as

    if encodec_weights is not None:
        raise CheckpointError(f"EnCodec weights were given, but the codec is {spec!r}, not EnCodec")
    path = Path(spec)
    if root is not None and not path.is_absolute() and (root / path).is_dir():
        path = root / path
    if not path.exists():
        raise CheckpointError(f"unknown codec {spec!r}: expected 'encodec', 'encodec-<kbps>kbps' or a codec directory")
    return load_as(path, Codec, "codec")


__all__ = ["Codec", "load_codec"]
