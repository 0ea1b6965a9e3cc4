"""Embeddings of sequence files in windows, with flat memory: the engine behind ``dna embed`` (and the windows
``dna predict`` classifies).

Records stream from the file; each is cut into windows (default: the model's context), windows from any records
are batched (right-padded, with lengths, so padding never leaks), the batches run through `genomics.scale` (one
process, or many), and every finished record is handed back at once. Memory is the model's activations for one
batch plus the record being embedded, whatever the file size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from longseq.core.io import InputError
from longseq.genomics.data.fasta import Record, window_starts
from longseq.genomics.data.tokenizer import PAD, DNATokenizer, reverse, reverse_complement
from longseq.genomics.models.classifier import pool
from longseq.genomics.scale import NpzWriter

Pooling = Literal["mean", "max", "last", "none"]
Precision = Literal["32-true", "bf16-mixed"]


@dataclass
class RecordEmbedding:
    """One record's output.

    Attributes:
        id, length: the record.
        starts, ends: (n_windows,) window coordinates (0-based, end exclusive).
        windows: (n_windows, d) pooled window embeddings (pooling mean / max / last), else None.
        pooled: (d,) the record's embedding: length-weighted mean of window means, max of window maxes, or the
            last window's last position; None for pooling "none".
        positions: (length, d) per-nucleotide embeddings (pooling "none"; overlapping windows averaged).
    """

    id: str
    length: int
    starts: np.ndarray
    ends: np.ndarray
    windows: np.ndarray | None = None
    pooled: np.ndarray | None = None
    positions: np.ndarray | None = None


@dataclass
class _Pending:
    """A record whose windows are still arriving."""

    id: str
    length: int
    n_windows: int
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    windows: list[np.ndarray] = field(default_factory=list)
    sums: np.ndarray | None = None
    counts: np.ndarray | None = None


@dataclass(frozen=True)
class Window:
    """One window of a record: what a batch plan holds (the text is a slice; tokenising waits for `prepare`)."""

    record: int
    id: str
    length: int
    n_windows: int
    start: int
    text: str


def window_batches(records: Iterable[Record], *, window: int, stride: int, batch_size: int) -> Iterator[list[Window]]:
    """Batch plans: the windows of the records in file order, ``batch_size`` at a time (windows of several records
    share a batch). Only the record being cut is held."""
    batch: list[Window] = []
    for index, record in enumerate(records):
        starts = window_starts(len(record.seq), window, stride)
        for start in starts:
            text = record.seq[start : start + window]
            batch.append(Window(index, record.id, len(record.seq), len(starts), start, text))
            if len(batch) == batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


def encode_windows(windows: list[Window], tokenizer: DNATokenizer) -> dict:
    """A batch plan -> ``ids`` (b, l) right-padded and ``lengths`` (b,) tensors, with each window's coordinates
    (``record``, ``start``, ``end``, ``n_windows``, ``length`` (b,) int64 and ``id`` (b,) str arrays)."""
    tokens = [tokenizer.encode(w.text, name=w.id, offset=w.start) for w in windows]
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    ids = np.full((len(tokens), int(lengths.max())), PAD, dtype=np.int64)
    ids[np.arange(ids.shape[1])[None, :] < lengths[:, None]] = np.concatenate(tokens)
    starts = np.array([w.start for w in windows], dtype=np.int64)
    return {
        "ids": torch.from_numpy(ids),
        "lengths": torch.from_numpy(lengths),
        "record": np.array([w.record for w in windows], dtype=np.int64),
        "start": starts,
        "end": starts + lengths,
        "n_windows": np.array([w.n_windows for w in windows], dtype=np.int64),
        "length": np.array([w.length for w in windows], dtype=np.int64),
        "id": np.array([w.id for w in windows], dtype=str),
    }


def coordinates(batch: dict) -> dict[str, np.ndarray]:
    """The window coordinates of a prepared batch, passed through to its outputs."""
    return {name: batch[name] for name in ("record", "start", "end", "n_windows", "length", "id")}


@torch.no_grad()
def embed_windows(
    model: nn.Module,
    ids: torch.Tensor,
    lengths: torch.Tensor,
    *,
    rc: bool,
    layer: int,
    precision: Precision = "32-true",
) -> torch.Tensor:
    """Per-position float32 embeddings (b, l, d) of right-padded windows; with ``rc`` averaged with the reverse
    complement's embeddings mapped back to the forward positions. ``precision`` "bf16-mixed" runs the model under
    bfloat16 autocast (the matmuls in bfloat16; FFTs, scans and norms stay float32)."""
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        h = model.embed(ids, lengths, layer=layer).float()
        if rc:
            h_rc = model.embed(reverse_complement(ids, lengths), lengths, layer=layer).float()
            h = (h + reverse(h_rc, lengths)) / 2
    return h


def embed_batch(
    model: nn.Module, batch: dict, *, pooling: Pooling, rc: bool, layer: int, precision: Precision = "32-true"
) -> dict[str, np.ndarray]:
    """A prepared batch -> its coordinates and ``emb``: (b, d) pooled window embeddings, or (b, l, d) per position
    (pooling "none"; rows past a window's length are padding)."""
    ids, lengths = batch["ids"], batch["lengths"]
    h = embed_windows(model, ids, lengths, rc=rc, layer=layer, precision=precision)
    emb = pool(h, lengths, pooling) if pooling != "none" else h
    return {**coordinates(batch), "emb": emb.cpu().numpy()}


def assemble(outputs: Iterable[dict[str, np.ndarray]], pooling: Pooling, progress=None) -> Iterator[RecordEmbedding]:
    """Window outputs in input order (`embed_batch`'s) -> each record's `RecordEmbedding`, as soon as its last window
    has come. ``progress``: an optional tqdm-like object, advanced by the bases of each window."""
    pending: dict[int, _Pending] = {}
    for out in outputs:
        for row, index in enumerate(out["record"].tolist()):
            start, end = int(out["start"][row]), int(out["end"][row])
            rec = pending.get(index)
            if rec is None:
                rec = _Pending(str(out["id"][row]), int(out["length"][row]), int(out["n_windows"][row]))
                pending[index] = rec
                if pooling == "none":
                    rec.sums = np.zeros((rec.length, out["emb"].shape[-1]), dtype=np.float32)
                    rec.counts = np.zeros((rec.length, 1), dtype=np.float32)
            rec.starts.append(start)
            rec.ends.append(end)
            if pooling == "none":
                rec.sums[start:end] += out["emb"][row, : end - start]
                rec.counts[start:end] += 1
            else:
                rec.windows.append(out["emb"][row])
            if progress is not None:
                progress.update(end - start)
            if len(rec.starts) == rec.n_windows:
                yield _finish(pending.pop(index), pooling)


def _finish(rec: _Pending, pooling: Pooling) -> RecordEmbedding:
    starts, ends = np.asarray(rec.starts, dtype=np.int64), np.asarray(rec.ends, dtype=np.int64)
    if pooling == "none":
        # Positions a stride larger than the window skipped stay zero with count 0.
        positions = rec.sums / np.maximum(rec.counts, 1)
        return RecordEmbedding(rec.id, rec.length, starts, ends, positions=positions)
    windows = np.stack(rec.windows)
    if pooling == "mean":
        weights = (ends - starts).astype(np.float64)
        pooled = (windows * weights[:, None]).sum(0) / weights.sum()
    elif pooling == "max":
        pooled = windows.max(0)
    else:
        pooled = windows[int(np.argmax(ends))]
    return RecordEmbedding(rec.id, rec.length, starts, ends, windows=windows, pooled=pooled.astype(np.float32))


def write_embeddings(path: Path, results: Iterable[RecordEmbedding], pooling: Pooling) -> tuple[int, int]:
    """Stream ``results`` into an ``.npz`` at ``path``; returns (records, bases).

    Layout: ``ids`` (n,) record ids and ``lengths`` (n,); pooled modes add ``embeddings`` (n_windows, d),
    ``record`` (n_windows,) the row of ``ids`` each window belongs to, ``start`` / ``end`` (n_windows,), and
    ``record_embeddings`` (n, d); pooling "none" adds ``emb_<i>`` (length_i, d) for record i.
    """
    writer = NpzWriter(path)
    ids, lengths, rows, windows, starts, ends, pooled = [], [], [], [], [], [], []
    try:
        for i, result in enumerate(results):
            ids.append(result.id)
            lengths.append(result.length)
            if pooling == "none":
                writer.add(f"emb_{i}", result.positions)
                continue
            rows.append(np.full(len(result.starts), i, dtype=np.int64))
            windows.append(result.windows)
            starts.append(result.starts)
            ends.append(result.ends)
            pooled.append(result.pooled)
        if not ids:
            raise InputError("no records to embed")
        writer.add("ids", np.asarray(ids, dtype=str))
        writer.add("lengths", np.asarray(lengths, dtype=np.int64))
        if pooling != "none":
            writer.add("embeddings", np.concatenate(windows).astype(np.float32))
            writer.add("record", np.concatenate(rows))
            writer.add("start", np.concatenate(starts))
            writer.add("end", np.concatenate(ends))
            writer.add("record_embeddings", np.stack(pooled))
    finally:
        writer.close()
    return len(ids), int(sum(lengths))
