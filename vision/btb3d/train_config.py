"""What `vision train3d` reads besides the shared trainer and optimizer settings: its data (``--data.*``) and the
curriculum stage with its losses (``--task.*``). Plain dataclasses with no heavy imports, every field checked in
``__post_init__``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from longseq.vision.btb3d.volumes import check_spacing


@dataclass(kw_only=True)
class VolumeDataConfig:
    """Training scans and the excerpts cut from them."""

    scans: list[str]
    """Training volumes: NIfTI files, DICOM files or DICOM series directories."""
    batch_size: int = 1
    """Excerpts per batch."""
    batches_per_epoch: int = 100
    """Batches per epoch; the excerpts are drawn afresh every epoch."""
    depth: int | None = None
    """Slices per 3D excerpt (None: 9 in stage 1, 41 in stages 2 and 3)."""
    slice_every: int | None = None
    """Every n-th batch is 2D single slices (None: 2 in stage 1, none later; 0: none)."""
    crop_size: int = 64
    """In-plane size of the excerpts (the discriminators are built for it)."""
    intensity: Literal["ct", "percentile"] = "ct"
    """ct: Hounsfield units clipped to [-1000, 1000]; percentile: unitless scans (MRI) scaled by percentiles."""
    spacing: tuple[float, float, float] | None = (1.5, 0.75, 0.75)
    """Resample the scans to this spacing in mm (slices, rows, columns) first; None keeps their grids."""

    def __post_init__(self):
        if not self.scans or not all(str(scan).strip() for scan in self.scans):
            raise ValueError(f"data.scans must name at least one scan, got {list(self.scans)}")
        for name in ("batch_size", "batches_per_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name} must be positive, got {getattr(self, name)}")
        if self.depth is not None and self.depth < 1:
            raise ValueError(f"data.depth must be positive (1 + a multiple of 8 slices), got {self.depth}")
        if self.slice_every is not None and self.slice_every < 0:
            raise ValueError(f"data.slice_every must be >= 0, got {self.slice_every}")
        if self.crop_size < 8 or self.crop_size % 8:
            raise ValueError(f"data.crop_size must be a positive multiple of 8, got {self.crop_size}")
        if self.intensity not in ("ct", "percentile"):
            raise ValueError(f"data.intensity must be 'ct' or 'percentile', got {self.intensity!r}")
        check_spacing(self.spacing)

    def stage_depth(self, stage: int) -> int:
        return self.depth if self.depth is not None else (9 if stage == 1 else 41)

    def stage_slice_every(self, stage: int) -> int:
        return self.slice_every if self.slice_every is not None else (2 if stage == 1 else 0)


@dataclass(kw_only=True)
class BTB3DTaskConfig:
    """The curriculum stage and the losses. Defaults follow the released 8x8x8 training config."""

    stage: Literal[1, 2, 3] = 1
    """1: 9-slice windows and 2D slices; 2: long excerpts through the window tiling; 3: decoder only."""
    recon_weight: float = 5.0
    aux_weight: float = 1.0
    """Weight of the LFQ losses (entropy_weight * entropy + 0.25 * commitment)."""
    entropy_weight: float = 0.1
    entropy_scale: float = 3.0
    """The entropy weight starts at entropy_scale * entropy_weight ..."""
    entropy_decay_steps: int = 2000
    """... and decays linearly to entropy_weight over this many steps."""
    use_gan: bool = True
    g_weight: float = 0.1
    d_weight: float = 1.0
    disc_lr_scale: float = 0.8
    """The discriminators' learning rate, relative to the optimizer's."""
    lecam_weight: float = 0.001
    lecam_decay: float = 0.999
    r1_weight: float = 10.0
    r1_every: int = 20
    disc_filters: int = 8
    disc_frames: int = 9
    """Slices the 3D discriminator sees (a random crop of longer excerpts)."""
    perceptual_weight: float = 0.3
    perceptual_arch: str = "vgg16"
    """A torchvision model whose features compare slices."""
    perceptual_weights: str | None = None
    """A local weights file for the perceptual network; None turns the perceptual loss off."""

    def __post_init__(self):
        weights = ("recon_weight", "aux_weight", "entropy_weight", "entropy_scale", "g_weight", "d_weight")
        for name in (*weights, "lecam_weight", "r1_weight", "perceptual_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"task.{name} must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.disc_lr_scale) and self.disc_lr_scale > 0):
            raise ValueError(f"task.disc_lr_scale must be positive, got {self.disc_lr_scale}")
        if not 0 <= self.lecam_decay < 1:
            raise ValueError(f"task.lecam_decay must lie in [0, 1), got {self.lecam_decay}")
        if self.entropy_decay_steps < 0:
            raise ValueError(f"task.entropy_decay_steps must be >= 0, got {self.entropy_decay_steps}")
        if self.r1_every < 1 or self.disc_filters < 1:
            raise ValueError(
                f"task.r1_every and task.disc_filters must be positive, got {self.r1_every}, {self.disc_filters}"
            )
        if self.disc_frames < 1 or (self.disc_frames - 1) % 8:
            raise ValueError(f"task.disc_frames must be 1 + a multiple of 8, got {self.disc_frames}")
        if not self.perceptual_arch:
            raise ValueError("task.perceptual_arch must name a torchvision model")

    def entropy_weight_at(self, step: int) -> float:
        """Linear decay from entropy_scale * entropy_weight to entropy_weight over entropy_decay_steps."""
        if step >= self.entropy_decay_steps:
            return self.entropy_weight
        start = self.entropy_scale * self.entropy_weight
        return start + (self.entropy_weight - start) * step / self.entropy_decay_steps
