"""What ``dna pretrain`` and ``dna finetune`` train on (``--data.*``): plain dataclasses, every field checked when
the flags are parsed; the files themselves are checked when they are opened."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")


@dataclass(kw_only=True)
class GenomeDataConfig:
    """A genome to pretrain on, split by position: the head of each record trains, then validation, then test."""

    input: Path
    """FASTA / FASTQ / GenBank, gzipped or not."""
    seq_len: int | None = None
    """Training window length (None: the model's context)."""
    val_fraction: float = 0.1
    """The part of each record after the training part that validates."""
    test_fraction: float = 0.0
    """The last part of each record, held out: never trained or validated on."""
    batch_size: int = 8
    """Windows per batch and per device."""
    rc_augment: bool | None = None
    """Train on the reverse complement of each window half the time (None: on for Caduceus-Ph, as in its paper)."""
    seq_warmup_start: int | None = None
    """Sequence-length warm-up (HyenaDNA's): start at windows of this length (None: no warm-up) ..."""
    seq_warmup_stage_steps: int = 0
    """... and double it every this many steps, up to seq_len."""

    def __post_init__(self):
        if self.seq_len is not None and self.seq_len < 1:
            raise ValueError(f"seq_len must be positive (or None: the model's context), got {self.seq_len}")
        fractions = (self.val_fraction, self.test_fraction)
        if not (all(0 <= f < 1 for f in fractions) and sum(fractions) < 1):
            raise ValueError(f"need 0 <= val_fraction, test_fraction and their sum < 1, got {fractions}")
        _check_batch_size(self.batch_size)
        if self.seq_warmup_start is not None:
            if self.seq_warmup_start < 1:
                raise ValueError(f"seq_warmup_start must be positive, got {self.seq_warmup_start}")
            if self.seq_len is not None and self.seq_warmup_start > self.seq_len:
                raise ValueError(f"seq_warmup_start {self.seq_warmup_start} is longer than seq_len {self.seq_len}")
            if self.seq_warmup_stage_steps < 1:
                raise ValueError("seq_warmup_start needs seq_warmup_stage_steps >= 1 (the steps of each stage)")
        elif self.seq_warmup_stage_steps < 0:
            raise ValueError(f"seq_warmup_stage_steps must be >= 0, got {self.seq_warmup_stage_steps}")


@dataclass(kw_only=True)
class LabelledDataConfig:
    """Labelled sequences: CSV or TSV rows ``sequence,label`` (a header naming the two columns is optional)."""

    train: Path
    """The training table; its distinct labels are the classes (at least two)."""
    val: Path | None = None
    """A validation table (its labels must be among the training labels)."""
    batch_size: int = 8
    """Sequences per batch and per device."""
    rc_augment: bool | None = None
    """Train on the reverse complement of each sequence half the time (None: on for Caduceus-Ph)."""

    def __post_init__(self):
        _check_batch_size(self.batch_size)
