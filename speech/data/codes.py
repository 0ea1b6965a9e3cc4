"""A corpus encoded into codec codes once, so that training reads integers instead of audio.

Stored as one safetensors file: ``codes`` (k, total_frames) int16 with every utterance's frames concatenated,
``offsets`` (n + 1,) int64, and the texts, speakers, splits and codec facts as JSON metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from longseq.core.checkpoint import CheckpointError
from longseq.core.io import atomic_output
from longseq.speech.audio import load_audio
from longseq.speech.codecs.base import Codec
from longseq.speech.data.manifest import Utterance


@dataclass(kw_only=True)
class EncodedCorpus:
    """Codes (k, t_i) per utterance with their transcripts; ``codec`` is the spec that encoded them."""

    codes: list[torch.Tensor]
    texts: list[str]
    speakers: list[str]
    splits: list[str]
    codec: str
    frame_rate: float
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.codes)

    def indices(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.splits) if s == split]

    def save(self, path: str | os.PathLike) -> Path:
        offsets = torch.tensor([0] + [c.shape[-1] for c in self.codes]).cumsum(0)
        tensors = {"codes": torch.cat(self.codes, dim=-1).to(torch.int16).contiguous(), "offsets": offsets}
        meta = {
            "texts": self.texts,
            "speakers": self.speakers,
            "splits": self.splits,
            "codec": self.codec,
            "frame_rate": self.frame_rate,
            "extra": self.extra,
        }
        path = Path(path)
        with atomic_output(path) as tmp:
            save_file(tensors, str(tmp), metadata={"corpus": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> EncodedCorpus:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"encoded corpus not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["corpus"])
                codes, offsets = f.get_tensor("codes").long(), f.get_tensor("offsets").tolist()
        except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as err:
            raise CheckpointError(f"{path} is not an encoded corpus ({err})") from None
        pieces = [codes[:, a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        return cls(
            codes=pieces,
            texts=meta["texts"],
            speakers=meta["speakers"],
            splits=meta["splits"],
            codec=meta["codec"],
            frame_rate=meta["frame_rate"],
            extra=meta.get("extra", {}),
        )


def encode_corpus(utterances: list[Utterance], codec: Codec, codec_spec: str) -> EncodedCorpus:
    """Encode every utterance (one at a time: lengths differ and the codec is fast next to training)."""
    codes = []
    for utt in tqdm(utterances, desc="encoding", unit="utt"):
        codes.append(codec.encode(load_audio(utt.audio, codec.sample_rate))[0].cpu())
    return EncodedCorpus(
        codes=codes,
        texts=[u.text for u in utterances],
        speakers=[u.speaker for u in utterances],
        splits=[u.split for u in utterances],
        codec=codec_spec,
        frame_rate=codec.frame_rate,
    )
