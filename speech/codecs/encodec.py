"""EnCodec 24 kHz (Défossez et al. 2022) through the `encodec` package, with offline weight loading.

The package's own loader downloads on a cache miss and unpickles without ``weights_only``; we build the
architecture with ``pretrained=False`` and load the official ``.th`` state dict ourselves through
`core.checkpoint.load_tensors` (no code runs from the file, no network).
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path

import torch

from longseq.core.checkpoint import CheckpointError, load_strict, load_tensors
from longseq.speech.codecs.base import Codec

WEIGHTS_FILE = "encodec_24khz-d7cc33bc.th"
WEIGHTS_URL = "https://dl.fbaipublicfiles.com/encodec/v0/" + WEIGHTS_FILE
# kbps -> number of codebooks: n_q = bandwidth * 1000 / (log2(1024) bits * 75 frames/s).
BANDWIDTHS = {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32}


def hub_weights_path() -> Path:
    """Where torch.hub caches the official file: ``$TORCH_HOME/hub/checkpoints/encodec_24khz-d7cc33bc.th``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def find_weights(weights: str | os.PathLike | None) -> Path:
    """Resolve the EnCodec weights: a file, a directory holding the official file, or the torch hub cache."""
    if weights is None:
        path = hub_weights_path()
    else:
        path = Path(weights)
        if path.is_dir():
            path = path / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(
            f"EnCodec weights not found at {path}: download {WEIGHTS_URL} and put {WEIGHTS_FILE} in "
            f"{hub_weights_path().parent} (or pass its directory as the codec weights)"
        )
    return path


def _check_sha256_prefix(path: Path) -> None:
    """Official file names carry the first hex digits of their sha256 (``encodec_24khz-<prefix>.th``)."""
    named = re.fullmatch(r"encodec_24khz-([0-9a-f]{8})\.th", path.name)
    if named is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(named.group(1)):
        raise CheckpointError(f"{path} is corrupt: its sha256 does not start with {named.group(1)}; download it again")


class EncodecCodec(Codec):
    """EnCodec 24 kHz, mono, 75 frames per second, 1024 codes per codebook.

    Args:
        bandwidth: kbps in {1.5, 3, 6, 12, 24}: 2, 4, 8, 16 or 32 codebooks (VALL-E uses 6: 8 codebooks).
        weights: the official ``.th`` file or its directory; None looks in the torch hub cache.
        pretrained: False builds the real architecture with random weights (tests, no file needed).
    """

    sample_rate = 24_000
    frame_rate = 75.0
    codebook_size = 1024

    def __init__(self, *, bandwidth: float = 6.0, weights: str | os.PathLike | None = None, pretrained: bool = True):
        super().__init__()
        if float(bandwidth) not in BANDWIDTHS:
            raise ValueError(f"EnCodec bandwidth must be one of {sorted(BANDWIDTHS)} kbps; got {bandwidth}")
        from encodec import EncodecModel

        self.bandwidth = float(bandwidth)
        self.n_codebooks = BANDWIDTHS[self.bandwidth]
        path = find_weights(weights) if pretrained else None  # a missing file is reported before any work
        with warnings.catch_warnings():  # encodec 0.1.1 uses the deprecated torch.nn.utils.weight_norm
            warnings.filterwarnings("ignore", message=".*weight_norm", category=FutureWarning)
            self.model = EncodecModel.encodec_model_24khz(pretrained=False)
        if path is not None:
            _check_sha256_prefix(path)
            load_strict(self.model, load_tensors(path), str(path))
        self.model.set_target_bandwidth(self.bandwidth)
        self.model.eval()

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        frames = self.model.encode(wav)
        return torch.cat([codes for codes, _ in frames], dim=-1)

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        wav = self.model.decode([(codes, None)])
        return wav[..., : codes.shape[-1] * self.samples_per_frame]
