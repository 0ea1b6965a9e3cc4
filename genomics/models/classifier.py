"""Sequence classification on a HyenaDNA or Caduceus backbone: pooled embeddings -> linear head.

The HyenaDNA benchmarks pool by the mean over positions and classify with one linear layer; Caduceus-PS pools
its RC-invariant embedding the same way; Caduceus-Ph is trained with RC augmentation and, at inference,
averages the logits of the sequence and its reverse complement (post-hoc conjoining, ``conjoin``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from longseq.core.registry import Family, Pretrained
from longseq.genomics.data.tokenizer import A, N, reverse_complement
from longseq.genomics.models.caduceus import Caduceus, CaduceusConfig
from longseq.genomics.models.hyenadna import HyenaDNA, HyenaDNAConfig

MODEL_TYPE = "dna_classifier"
Pooling = Literal["mean", "max", "last"]
Task = Literal["classification", "multilabel", "regression"]


def pool(h: torch.Tensor, lengths: torch.Tensor | None, pooling: Pooling) -> torch.Tensor:
    """Pool h (b, l, d) over each sequence's first ``lengths`` positions (all when None) -> (b, d)."""
    if lengths is None:
        lengths = torch.full((h.shape[0],), h.shape[1], device=h.device)
    valid = torch.arange(h.shape[1], device=h.device)[None, :] < lengths[:, None]  # (b, l)
    if pooling == "mean":
        return (h * valid[..., None]).sum(1) / lengths[:, None].to(h.dtype)
    if pooling == "max":
        return h.masked_fill(~valid[..., None], float("-inf")).amax(1)
    if pooling == "last":
        return h[torch.arange(h.shape[0], device=h.device), lengths - 1]
    raise ValueError(f"unknown pooling {pooling!r}")


@dataclass(kw_only=True)
class ClassifierConfig:
    """A backbone config, the head's outputs, and how to pool and conjoin.

    ``classes`` names the head's outputs: the classes of a ``classification`` (softmax, at least two), the labels
    of a ``multilabel`` one (a sigmoid each), or the targets of a ``regression``.
    """

    backbone_type: Literal["hyenadna", "caduceus"]
    backbone: HyenaDNAConfig | CaduceusConfig | dict
    classes: list[str]
    task: Task = "classification"
    pooling: Pooling = "mean"
    conjoin: bool = False  # average with the reverse complement's logits in eval mode
    dropout: float = 0.0

    def __post_init__(self):
        if isinstance(self.backbone, dict):  # read back from config.json
            config_cls = HyenaDNAConfig if self.backbone_type == "hyenadna" else CaduceusConfig
            self.backbone = config_cls(**self.backbone)
        expected = HyenaDNAConfig if self.backbone_type == "hyenadna" else CaduceusConfig
        if not isinstance(self.backbone, expected):
            raise ValueError(f"backbone_type {self.backbone_type!r} does not match a {type(self.backbone).__name__}")
        if self.task not in ("classification", "multilabel", "regression"):
            raise ValueError(f"task must be classification, multilabel or regression; got {self.task!r}")
        if len(self.classes) < (2 if self.task == "classification" else 1):
            raise ValueError(f"a {self.task} head needs more outputs; got {self.classes}")
        if self.pooling not in ("mean", "max", "last"):
            raise ValueError(f"pooling must be mean, max or last; got {self.pooling!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def outputs_of(logits: torch.Tensor, task: Task) -> torch.Tensor:
    """Head outputs (b, k) -> what a user reads: class probabilities (softmax), label probabilities (sigmoid), or
    the regression values themselves."""
    if task == "classification":
        return logits.float().softmax(-1)
    if task == "multilabel":
        return logits.float().sigmoid()
    return logits.float()


class SequenceClassifier(Pretrained, nn.Module):
    """``model(input_ids, lengths)`` -> class logits (b, num_classes), for right-padded batches."""

    model_type = MODEL_TYPE

    def __init__(self, config: ClassifierConfig, *, backbone: nn.Module | None = None, device=None, dtype=None):
        super().__init__()
        self.config = config
        backbone_cls = HyenaDNA if config.backbone_type == "hyenadna" else Caduceus
        self.backbone = backbone if backbone is not None else backbone_cls(config.backbone, device=device, dtype=dtype)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.backbone.embedding_dim, config.num_classes, device=device, dtype=dtype)
        # A small head init: Caduceus users saw diverging fine-tuning with the default (caduceus issue #37).
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_backbone(cls, backbone: nn.Module, classes: list[str], **options) -> SequenceClassifier:
        """A classifier around a (pretrained) backbone model."""
        backbone_type = "hyenadna" if isinstance(backbone, HyenaDNA) else "caduceus"
        config = ClassifierConfig(backbone_type=backbone_type, backbone=backbone.config, classes=classes, **options)
        return cls(config, backbone=backbone)

    @property
    def context_length(self) -> int | None:
        return self.backbone.context_length

    def _logits(self, input_ids: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        h = self.backbone.embed(input_ids, lengths)
        return self.head(self.drop(pool(h, lengths, self.config.pooling)))

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (b, l), lengths (b,) -> logits (b, num_classes)."""
        logits = self._logits(input_ids, lengths)
        if self.config.conjoin and not self.training:
            logits = (logits + self._logits(reverse_complement(input_ids, lengths), lengths)) / 2
        return logits


def example(model: SequenceClassifier) -> tuple[torch.Tensor, torch.Tensor]:
    """Two right-padded sequences of 11 and 6 bases with their lengths: the registry's tiny forward pass."""
    return torch.randint(A, N + 1, (2, 11)), torch.tensor([11, 6])


FAMILY = Family(model_class=SequenceClassifier, config_class=ClassifierConfig, example=example)
