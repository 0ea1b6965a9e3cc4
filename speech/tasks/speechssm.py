"""Training SpeechSSM on fixed-length segments of codec frames.

Each speaker's utterances are joined, in corpus order, into one stream of frames; a segment is ``segment_frames``
consecutive frames of a stream starting at a random offset and wrapping around to the stream's start instead of
running into padding. No segment ever ends in silence or padding (SpeechSSM's implicit-EOS fix: the model
never learns that speech stops, and keeps going past its training length).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from longseq.core.io import InputError
from longseq.core.train import OptimizerConfig, configure_optimizers
from longseq.speech.data.codes import EncodedCorpus
from longseq.speech.models.speechssm import SpeechSSM


class CodeSegments(Dataset):
    """Item i: codes (n_codebooks, segment_frames) from one speaker's stream, fixed by (seed, i). Batches of these
    fixed-size crops come from `speech.tasks.data.ResumableDataModule` as audio crops do.

    Streams are chosen in proportion to their length. One epoch holds ``length`` segments (default: as many as fit
    in the streams' frames); a run of one epoch draws a fresh segment for every item.
    """

    def __init__(
        self,
        corpus: EncodedCorpus,
        indices: list[int],
        *,
        n_codebooks: int,
        segment_frames: int,
        length: int | None = None,
        seed: int = 0,
    ):
        if not indices:
            raise InputError("no utterances to train on")
        have = corpus.codes[indices[0]].shape[0]
        if have < n_codebooks:
            raise InputError(f"the corpus has {have} codebooks; the model needs {n_codebooks}")
        if segment_frames < 2:
            raise InputError(f"segments need at least 2 frames; got {segment_frames}")
        by_speaker: dict[str, list[torch.Tensor]] = {}
        for i in indices:
            by_speaker.setdefault(corpus.speakers[i], []).append(corpus.codes[i][:n_codebooks])
        self.streams = [torch.cat(pieces, dim=-1) for pieces in by_speaker.values()]
        lengths = np.array([s.shape[-1] for s in self.streams], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.segment_frames = segment_frames
        self.seed = seed
        self.length = length or max(1, int(lengths.sum()) // segment_frames)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        stream = self.streams[int(rng.choice(len(self.streams), p=self.weights))]
        start = int(rng.integers(stream.shape[-1]))
        return stream[:, (start + torch.arange(self.segment_frames)) % stream.shape[-1]]


class SpeechSSMTask(L.LightningModule):
    """Next-column cross-entropy over the delayed grid of each segment; batches are codes (b, k, n)."""

    def __init__(self, model: SpeechSSM, *, optimizer: OptimizerConfig | None = None):
        super().__init__()
        self.model = model
        self.optimizer_config = optimizer if optimizer is not None else OptimizerConfig()

    def training_step(self, codes: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss, accuracy = self.model.loss(codes)
        self.log_dict({"train/loss": loss, "train/acc": accuracy}, prog_bar=True, batch_size=len(codes))
        return loss

    def validation_step(self, codes: torch.Tensor, batch_idx: int) -> None:
        loss, accuracy = self.model.loss(codes)
        self.log_dict({"val/loss": loss, "val/acc": accuracy}, sync_dist=True, batch_size=len(codes))

    def configure_optimizers(self) -> dict:
        return configure_optimizers(self.model, self.optimizer_config, self.trainer.estimated_stepping_batches)
