"""Vocos (Siuzdak 2023) as a decoder of EnCodec codes, through the ``vocos`` package, offline.

VALL-E X and VALL-E 2 turn their EnCodec codes into audio with Vocos (``charactr/vocos-encodec-24khz``,
decoded at 6 kbps: ``bandwidth_id`` 2). ``Vocos.from_pretrained`` downloads its files and the EnCodec weights;
we build the same network from its published hyper-parameters (`HPARAMS`, the package's
``configs/vocos-encodec.yaml``) and read the local ``pytorch_model.bin`` with ``torch.load(weights_only=True)``.
Decoding codes needs only the codebook table, the backbone and the head: the EnCodec inside the feature
extractor (which encodes audio, never used here) keeps the weights it was built with.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from unittest import mock

import torch
from torch import nn

from longseq.core.checkpoint import CheckpointError, load_strict, load_tensors

WEIGHTS_FILE = "pytorch_model.bin"
WEIGHTS_SOURCE = "https://huggingface.co/charactr/vocos-encodec-24khz"
# The bandwidths Vocos was trained for and the one VALL-E X decodes at (6 kbps, 8 codebooks).
BANDWIDTHS = (1.5, 3.0, 6.0, 12.0)
HPARAMS = {
    "backbone": {"input_channels": 128, "dim": 384, "intermediate_dim": 1152, "num_layers": 8},
    "head": {"dim": 384, "n_fft": 1280, "hop_length": 320, "padding": "same"},
}


def build_vocos() -> nn.Module:
    """``vocos.Vocos`` of the EnCodec variant with random weights (its EnCodec built without a download)."""
    from encodec import EncodecModel
    from vocos import Vocos
    from vocos.feature_extractors import EncodecFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    offline = EncodecModel.encodec_model_24khz

    def untrained(pretrained: bool = True, repository=None):  # noqa: ARG001  (EncodecFeatures asks for True)
        return offline(pretrained=False)

    with warnings.catch_warnings(), mock.patch.object(EncodecModel, "encodec_model_24khz", untrained):
        warnings.filterwarnings("ignore", message=".*weight_norm", category=FutureWarning)
        features = EncodecFeatures(encodec_model="encodec_24khz", bandwidths=list(BANDWIDTHS))
    backbone = VocosBackbone(**HPARAMS["backbone"], adanorm_num_embeddings=len(BANDWIDTHS))
    return Vocos(feature_extractor=features, backbone=backbone, head=ISTFTHead(**HPARAMS["head"]))


class VocosDecoder(nn.Module):
    """EnCodec codes -> 24 kHz audio through Vocos.

    Args:
        weights: the ``pytorch_model.bin`` of ``charactr/vocos-encodec-24khz`` (or its directory); None keeps
            random weights (tests).
        bandwidth: the kbps the codes were made at (6: VALL-E's 8 codebooks).
    """

    sample_rate = 24_000

    def __init__(self, weights: str | os.PathLike | None = None, *, bandwidth: float = 6.0):
        super().__init__()
        if bandwidth not in BANDWIDTHS:
            raise CheckpointError(f"Vocos decodes EnCodec at {', '.join(map(str, BANDWIDTHS))} kbps; got {bandwidth}")
        self.bandwidth_id = BANDWIDTHS.index(bandwidth)
        path = None if weights is None else _find(weights)
        self.vocos = build_vocos()
        if path is not None:
            state = load_tensors(path)
            encodec = "feature_extractor.encodec."
            state = {k: v for k, v in state.items() if not k.startswith(encodec)}
            state.update({encodec + k: v for k, v in self.vocos.feature_extractor.encodec.state_dict().items()})
            load_strict(self.vocos, state, str(path))
        self.vocos.eval()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (b, k, t) int64 (EnCodec, k <= 16) -> wav (b, 1, t * 320)."""
        features = self.vocos.codes_to_features(codes.transpose(0, 1))
        bandwidth = torch.tensor([self.bandwidth_id], device=codes.device)
        return self.vocos.decode(features, bandwidth_id=bandwidth).unsqueeze(1)


def _find(weights: str | os.PathLike) -> Path:
    path = Path(weights)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"Vocos weights not found at {path}: download {WEIGHTS_FILE} from {WEIGHTS_SOURCE}")
    return path
