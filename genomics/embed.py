"""Embeddings of sequence files in windows, with flat memory: the engine behind ``dna embed``.

Records stream from the file; each is cut into windows (default: the model's context), windows from any records
are batched (right-padded, with lengths, so padding never leaks), and every finished record is handed back at
once. Memory is the model's activations for one batch plus the record being embedded, whatever the file size.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from longseq.core.io import InputError
from longseq.genomics.data.fasta import Record, window_starts
from longseq.genomics.data.tokenizer import DNATokenizer, pad_batch, reverse, reverse_complement
from longseq.genomics.models.classifier import pool

Pooling = Literal["mean", "max", "last", "none"]


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
    """A record whose windows are still being embedded."""

    id: str
    length: int
    n_windows: int
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    windows: list[np.ndarray] = field(default_factory=list)
    sums: np.ndarray | None = None
    counts: np.ndarray | None = None


@torch.no_grad()
def embed_windows(model: nn.Module, ids: torch.Tensor, lengths: torch.Tensor, *, rc: bool, layer: int) -> torch.Tensor:
    """Per-position embeddings (b, l, d) of right-padded windows; with ``rc`` averaged with the reverse complement's
    embeddings mapped back to the forward positions."""
    h = model.embed(ids, lengths, layer=layer).float()
    if rc:
        h_rc = model.embed(reverse_complement(ids, lengths), lengths, layer=layer).float()
        h = (h + reverse(h_rc, lengths)) / 2
    return h


def embed_records(
    model: nn.Module,
    records: Iterable[Record],
    *,
    window: int,
    stride: int,
    pooling: Pooling = "mean",
    rc: bool = False,
    layer: int = -1,
    batch_size: int = 16,
    tokenizer: DNATokenizer | None = None,
    device: torch.device | str = "cpu",
    progress=None,
) -> Iterator[RecordEmbedding]:
    """Embed records in windows; yield each record's `RecordEmbedding` as soon as its last window is done.

    Args:
        model: a genomics model (`HyenaDNA` or `Caduceus`) in eval mode, on ``device``.
        window, stride: window length and step (see `genomics.data.fasta.window_starts`).
        pooling: "mean", "max", "last" (per window) or "none" (per nucleotide).
        rc: average each position with the reverse complement strand.
        layer: which hidden states (see the models' ``hidden_states``).
        progress: an optional tqdm-like object, advanced by the bases of each finished window.
    """
    tokenizer = tokenizer or DNATokenizer()
    pending: dict[int, _Pending] = {}
    batch: list[tuple[int, int, np.ndarray]] = []

    def run_batch() -> Iterator[RecordEmbedding]:
        ids, lengths = pad_batch([tokens for _, _, tokens in batch])
        ids, lengths = ids.to(device), lengths.to(device)
        h = embed_windows(model, ids, lengths, rc=rc, layer=layer)
        pooled = pool(h, lengths, pooling).cpu().numpy() if pooling != "none" else None
        h = h.cpu().numpy() if pooling == "none" else None
        for row, (index, start, tokens) in enumerate(batch):
            rec = pending[index]
            rec.starts.append(start)
            rec.ends.append(start + len(tokens))
            if pooled is not None:
                rec.windows.append(pooled[row])
            else:
                rec.sums[start : start + len(tokens)] += h[row, : len(tokens)]
                rec.counts[start : start + len(tokens)] += 1
            if progress is not None:
                progress.update(len(tokens))
            if len(rec.starts) == rec.n_windows:
                yield _finish(pending.pop(index), pooling)
        batch.clear()

    for index, record in enumerate(records):
        starts = window_starts(len(record.seq), window, stride)
        pending[index] = rec = _Pending(record.id, len(record.seq), len(starts))
        if pooling == "none":
            rec.sums = np.zeros((len(record.seq), model.embedding_dim), dtype=np.float32)
            rec.counts = np.zeros((len(record.seq), 1), dtype=np.float32)
        for start in starts:
            text = record.seq[start : start + window]
            batch.append((index, start, tokenizer.encode(text, name=record.id, offset=start)))
            if len(batch) == batch_size:
                yield from run_batch()
    if batch:
        yield from run_batch()


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
