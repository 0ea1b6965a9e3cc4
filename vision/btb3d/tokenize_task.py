"""Whole-dataset tokenization through Lightning's predict loop: one tokens file per volume, written by whichever
process encodes it, so ``--devices N --num_nodes M`` spreads a dataset over N x M processes (DDP).

A volume that cannot be read (missing, unreadable, not 3D, not in the metadata) is that volume's failure, not the
run's: the others are encoded, and the failures are gathered from every process and named at the end.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import Dataset

from longseq.core.io import InputError
from longseq.vision.btb3d.lfq import indices_to_codes
from longseq.vision.btb3d.model import BTB3D
from longseq.vision.btb3d.scan_list import Metadata, ScanEntry
from longseq.vision.btb3d.tokens_file import TokensFile
from longseq.vision.btb3d.volumes import pad_to_grid, preprocess_ct, read_volume


class ScanVolumes(Dataset):
    """Each item: ``{"id", "volume" (preprocessed `Volume`), "input" (1, 1, d, h, w) padded to the token grid}``,
    or ``{"id", "error"}`` for a volume that cannot be used."""

    def __init__(
        self,
        entries: list[ScanEntry],
        *,
        compression: tuple[int, int, int],
        spacing: tuple[float, float, float] | None,
        hu_window: tuple[float, float],
        metadata: dict[str, Metadata] | None = None,
    ):
        self.entries, self.compression, self.metadata = entries, compression, metadata
        self.spacing, self.hu_window = spacing, hu_window

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[index]
        try:
            volume = read_volume(entry.path)
            if self.metadata is not None:
                if entry.id not in self.metadata:
                    raise InputError(f"{entry.id} is not in --metadata")
                volume = self.metadata[entry.id].apply(volume)
            volume = preprocess_ct(volume, spacing=self.spacing, window=self.hu_window)
        except InputError as err:
            return {"id": entry.id, "error": str(err)}
        cd, ch, _ = self.compression
        padded = torch.from_numpy(pad_to_grid(volume.data, cd, ch))[None, None]
        return {"id": entry.id, "volume": volume, "input": padded}


def one_item(batch: list[dict]) -> dict:
    """Volumes differ in size: one per batch, uncollated."""
    return batch[0]


class TokenizeVolumes(L.LightningModule):
    """Encodes each item and writes ``<output>/<id>.npz`` (ids + embeddings); collects (id, error) failures."""

    def __init__(self, tokenizer: BTB3D, output: Path, *, model_name: str, hu_window, tiled: bool = True):
        super().__init__()
        self.tokenizer = tokenizer
        self.output, self.model_name, self.hu_window, self.tiled = Path(output), model_name, hu_window, tiled
        self.done: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def predict_step(self, item: dict, batch_idx: int) -> str:
        """Returns the volume's id (Lightning's predictions are not kept: the files are the result)."""
        if "error" in item:
            self.failed.append((item["id"], item["error"]))
            return item["id"]
        bits = self.tokenizer.config.token_bits
        ids = self.tokenizer.tokenize(item["input"].to(self.device), tiled=self.tiled).ids
        volume = item["volume"]
        TokensFile(
            ids=ids[0].cpu().numpy(),
            token_bits=bits,
            shape=volume.data.shape,
            spacing=volume.spacing,
            affine=volume.affine,
            hu_window=self.hu_window,
            model=self.model_name,
            embeddings=indices_to_codes(ids, bits)[0].cpu().numpy(),
        ).write(self.output / f"{item['id']}.npz")
        self.done.append(item["id"])
        return item["id"]

    def on_predict_epoch_end(self) -> None:
        """Every process learns every process's results (DDP pads the last shard with repeats: counted once)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, (self.done, self.failed))
            self.done = sorted({i for done, _ in gathered for i in done})
            self.failed = sorted({f for _, failed in gathered for f in failed})
