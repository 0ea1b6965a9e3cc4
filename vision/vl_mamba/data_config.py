"""The flags of `vision train-vlm`'s data (``--data.*``): a plain dataclass, importable without torch or timm."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class VQADataConfig:
    """Where the LLaVA-style JSONL records are, and how to batch them."""

    train: str
    """The training JSONL (image paths relative to it)."""
    val: str | None = None
    """A validation JSONL; None: hold out ``val_size`` training records."""
    val_size: int = 256
    """Training records held out for validation when there is no ``val`` file (at most a fifth of them)."""
    batch_size: int = 16

    def __post_init__(self):
        if not self.train:
            raise ValueError("train must name the training JSONL")
        if self.val_size < 1 or self.batch_size < 1:
            raise ValueError(f"val_size and batch_size must be >= 1, got {self.val_size} and {self.batch_size}")
