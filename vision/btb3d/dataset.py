"""Training batches for the BTB3D tokenizer: 3D excerpts of contiguous slices and 2D single slices.

Each item of `ExcerptBatches` is a whole batch, (b, 1, d, size, size) in [-1, 1], with d = `depth` for a 3D batch
or 1 for a 2D batch (every `slice_every`-th batch; BTB3D's stage 1 alternates the two). All randomness (which
volume, which slices, which crop) comes from a generator seeded by (seed, epoch, index), so an item is the
same item after a restart, whatever ran before.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


def percentile_to_unit(data: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Scale intensities without a physical unit (MRI) to [-1, 1] by robust percentiles, then clip."""
    lo, hi = np.percentile(data, [low, high])
    scale = max(float(hi - lo), 1e-6)
    return np.clip((data - lo) / scale * 2 - 1, -1, 1).astype(np.float32)


def first_item(items: list[torch.Tensor]) -> torch.Tensor:
    """Collate for a loader over `ExcerptBatches` with batch_size 1: each item already is a batch."""
    return items[0]


class ExcerptBatches(Dataset):
    """`length` batches of random excerpts from `volumes` (each (d, h, w), float32 in [-1, 1]).

    Args:
        volumes: the training volumes; they are padded with -1 (air) where smaller than an excerpt.
        depth: slices per 3D excerpt (1 + 8k: 9 for stage 1, 41 for stage 2).
        size: square in-plane crop.
        batch_size: excerpts per batch.
        length: batches per epoch.
        slice_every: every slice_every-th batch is 2D (single slices); 0 for none.
        seed: base seed.
    """

    def __init__(
        self,
        volumes: list[np.ndarray],
        *,
        depth: int,
        size: int,
        batch_size: int,
        length: int,
        slice_every: int = 0,
        seed: int = 0,
    ):
        if not volumes:
            raise ValueError("ExcerptBatches needs at least one volume")
        if any(v.ndim != 3 or v.size == 0 for v in volumes):
            raise ValueError("every training volume must be a non-empty (d, h, w) array")
        self.volumes = [np.asarray(v, dtype=np.float32) for v in volumes]
        self.depth, self.size, self.batch_size, self.length = depth, size, batch_size, length
        self.slice_every, self.seed = slice_every, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def is_2d(self, index: int) -> bool:
        return self.slice_every > 0 and index % self.slice_every == self.slice_every - 1

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        depth = 1 if self.is_2d(index) else self.depth
        excerpts = [self._excerpt(rng, depth) for _ in range(self.batch_size)]
        return torch.from_numpy(np.stack(excerpts))[:, None]

    def _excerpt(self, rng: np.random.Generator, depth: int) -> np.ndarray:
        volume = self.volumes[rng.integers(len(self.volumes))]
        d, h, w = volume.shape
        need = (depth, self.size, self.size)
        starts = [int(rng.integers(0, max(n - k, 0) + 1)) for n, k in zip((d, h, w), need)]
        crop = volume[tuple(slice(s, s + k) for s, k in zip(starts, need))]
        pad = [(0, k - n) for n, k in zip(crop.shape, need)]
        return np.pad(crop, pad, constant_values=-1.0)


def load_training_volume(path, *, intensity: str = "ct", spacing=(1.5, 0.75, 0.75)) -> np.ndarray:
    """Read a scan and bring it to [-1, 1]: "ct" clips Hounsfield units to [-1000, 1000]; "percentile" scales
    intensities without a unit (MRI) by robust percentiles. (d, h, w) float32."""
    from longseq.vision.btb3d.volumes import preprocess_ct, read_volume, resample

    volume = read_volume(path)
    if intensity == "ct":
        return preprocess_ct(volume, spacing=spacing).data
    if intensity != "percentile":
        raise ValueError(f"intensity must be 'ct' or 'percentile', not {intensity!r}")
    data = volume.data
    if spacing is not None:
        target = (volume.spacing[0], *spacing[1:]) if data.shape[0] == 1 else spacing
        data = resample(data, volume.spacing, target)
    return percentile_to_unit(data)
