"""Batches of inference on one process, or spread over processes and machines by Lightning's predict loop, handed
back in input order: the engine under ``dna embed``, ``dna predict`` and ``dna score``.

A job is three functions:

- ``plans()``: the stream of batch plans, cheap to make (slices of text and coordinates); every process walks the
  same stream, so batch k is the same batch whatever the number of processes;
- ``prepare(plan)``: the plan as arrays (tokenising, padding), run by the DataLoader, so its workers overlap it with
  the model;
- ``compute(model, batch)``: the model's outputs as a dict of numpy arrays, one row per item of the batch.

Batch k runs on the process ``k % world_size`` (and its DataLoader worker ``k // world_size % workers``). With one
process the outputs stream straight to the caller. With several, each rank writes its outputs into a shard file in a
scratch directory beside the output (it must be on a file system every node sees), and rank 0 reads them back in
batch order: the caller consumes the very same stream of batches, so the output file is the same byte for byte as
one process's (at equal thread counts: CPU kernels may sum in another order with another number of threads).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from longseq.core.io import InputError

Outputs = dict[str, np.ndarray]


class BatchStream(IterableDataset):
    """Yields ``(k, prepare(plan_k))`` for the batches k that belong to this process and DataLoader worker.

    An `InputError` from ``plans`` or ``prepare`` (a malformed file, a character that is not a base) is yielded as
    ``(k, {"error": message})`` so the main process can report it as one line, not as a worker's traceback.
    """

    def __init__(self, plans: Callable[[], Iterable[Any]], prepare: Callable[[Any], dict]):
        self.plans, self.prepare = plans, prepare

    def __iter__(self) -> Iterator[tuple[int, dict]]:
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        plans, k = iter(self.plans()), 0
        while True:
            try:
                plan = next(plans)
            except StopIteration:
                return
            except InputError as err:  # the input itself is refused (a malformed file): every stream says so
                yield k, {"error": str(err)}
                return
            if k % world == rank and k // world % workers == worker:
                try:
                    yield k, self.prepare(plan)
                except InputError as err:
                    yield k, {"error": str(err)}
            k += 1


def _checked(batch: dict) -> dict:
    if "error" in batch:
        raise InputError(batch["error"])
    return batch


def _as_prepared(item: tuple[int, dict]) -> tuple[int, dict]:
    return item


def _loader(stream: BatchStream, workers: int) -> DataLoader:
    # batch_size None: the stream yields whole batches; DataLoader only moves them from its workers, in order, and
    # leaves them as prepared (its default would turn the numpy coordinates into tensors).
    return DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=_as_prepared)


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@contextlib.contextmanager
def batch_outputs(
    model: nn.Module,
    stream: BatchStream,
    compute: Callable[[nn.Module, dict], Outputs],
    *,
    device: torch.device,
    scratch: Path,
    workers: int = 0,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "ddp",
) -> Iterator[Iterator[Outputs] | None]:
    """The outputs of every batch in input order; None on the ranks other than 0 (they have nothing to write).

    Args:
        scratch: the directory beside the output for the shards of a multi-process run (a temporary directory is
            made in it and removed).
        workers: DataLoader worker processes per rank that prepare batches (0: the main process prepares them).
        devices, num_nodes, strategy: Lightning's; with one device on one node no Lightning is involved.
    """
    if devices * num_nodes == 1:

        def stream_outputs() -> Iterator[Outputs]:
            with torch.inference_mode():
                for _, batch in _loader(stream, workers):
                    yield compute(model, _to(_checked(batch), device))

        yield stream_outputs()
        return
    import warnings

    from longseq.core.train import build_predictor

    predictor = _shard_writer(model, compute, scratch)
    trainer = build_predictor(
        accelerator=device.type,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        use_distributed_sampler=False,  # the stream shards itself, by batch
    )
    try:
        with warnings.catch_warnings():  # predict_step returns nothing on purpose: its outputs go to the shard
            warnings.filterwarnings("ignore", message="predict returned None")
            trainer.predict(predictor, dataloaders=_loader(stream, workers), return_predictions=False)
        yield _read_shards(predictor.directory) if trainer.is_global_zero else None
    finally:
        if trainer.is_global_zero and predictor.directory is not None:  # rank 0 made the shards' directory
            shutil.rmtree(predictor.directory, ignore_errors=True)


def _read_shards(directory: Path) -> Iterator[Outputs]:
    """The batches of every rank's shard, by batch index."""
    shards = [np.load(path) for path in sorted(directory.glob("rank*.npz"))]
    where: dict[int, Any] = {}
    for shard in shards:
        for key in shard.files:
            where.setdefault(int(key.split("/")[0]), shard)
    try:
        for k in range(len(where)):
            if k not in where:
                raise RuntimeError(f"batch {k} is missing from the shards in {directory}")
            shard = where[k]
            names = [key.split("/", 1)[1] for key in shard.files if key.startswith(f"{k}/")]
            yield {name: shard[f"{k}/{name}"] for name in names}
    finally:
        for shard in shards:
            shard.close()


class NpzWriter:
    """Write arrays into an ``.npz`` one at a time (``np.load`` reads it), so large outputs never sit in memory
    together."""

    def __init__(self, path: str | Path):
        self._zip = zipfile.ZipFile(path, "w", allowZip64=True)

    def add(self, name: str, array: np.ndarray) -> None:
        with self._zip.open(f"{name}.npy", "w", force_zip64=True) as handle:
            np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)

    def close(self) -> None:
        self._zip.close()


def _shard_writer(model: nn.Module, compute: Callable, scratch: Path):
    import lightning as L

    class ShardWriter(L.LightningModule):
        """Runs ``compute`` on its rank's batches and writes the outputs to ``<directory>/rank<r>.npz``."""

        def __init__(self):
            super().__init__()
            self.model = model
            self.directory: Path | None = None
            self._writer: NpzWriter | None = None

        def on_predict_start(self) -> None:
            made = str(tempfile.mkdtemp(prefix=".shards-", dir=scratch)) if self.global_rank == 0 else None
            self.directory = Path(self.trainer.strategy.broadcast(made, src=0))
            self._writer = NpzWriter(self.directory / f"rank{self.global_rank:05d}.npz")

        def predict_step(self, batch: tuple[int, dict], batch_idx: int) -> None:
            k, inputs = batch
            for name, value in compute(self.model, _checked(inputs)).items():
                self._writer.add(f"{int(k)}/{name}", value)

        def on_predict_end(self) -> None:
            self._writer.close()
            self.trainer.strategy.barrier("shards written")

    return ShardWriter()
