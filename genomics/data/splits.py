"""Train / validation / test splits of genomes by position: each record's head trains, its tail is held out."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from longseq.core.io import InputError
from longseq.genomics.data.fasta import read_records
from longseq.genomics.data.tokenizer import SEP, DNATokenizer


@dataclass
class GenomeSplit:
    """Token ids (int8) per record: ``train`` = the first 1 - val - test of each record, then ``val``, then
    ``test`` (the last ``test_fraction``, never trained or validated on)."""

    ids: list[str]
    train: list[np.ndarray]
    val: list[np.ndarray]
    test: list[np.ndarray]

    def joined(self, part: str) -> np.ndarray:
        """One part of every record, records separated by ``[SEP]`` (as HyenaDNA appends it), int64."""
        pieces = [p for p in getattr(self, part) if len(p)]
        if not pieces:
            return np.zeros(0, dtype=np.int64)
        out = [pieces[0]]
        for piece in pieces[1:]:
            out += [np.array([SEP], dtype=np.int8), piece]
        return np.concatenate(out).astype(np.int64)


def split_genome(
    path: str | os.PathLike,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    tokenizer: DNATokenizer | None = None,
) -> GenomeSplit:
    """Read and tokenise every record of a sequence file and split each one by position.

    Raises:
        InputError: fractions outside [0, 1) or summing to 1 or more, or a bad sequence file.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError(f"need 0 <= val, test and val + test < 1; got val={val_fraction}, test={test_fraction}")
    tokenizer = tokenizer or DNATokenizer()
    split = GenomeSplit([], [], [], [])
    for record in read_records(path):
        ids = tokenizer.encode(record.seq, name=record.id).astype(np.int8)
        n = len(ids)
        a, b = int(round(n * (1 - val_fraction - test_fraction))), int(round(n * (1 - test_fraction)))
        split.ids.append(record.id)
        split.train.append(ids[:a])
        split.val.append(ids[a:b])
        split.test.append(ids[b:])
    return split
