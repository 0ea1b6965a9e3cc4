"""BED intervals over a FASTA reference, streamed one reference record at a time."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from longseq.core.io import InputError
from longseq.genomics.data.fasta import Record, read_records, reverse_complement_text


@dataclass(frozen=True)
class Interval:
    """A 0-based, half-open BED interval; ``strand`` "-" means the reverse complement is wanted."""

    chrom: str
    start: int
    end: int
    name: str
    strand: str


def read_bed(path: str | os.PathLike) -> list[Interval]:
    """Parse a BED file (3 to 12 columns; ``track``, ``browser`` and ``#`` lines skipped).

    Raises:
        InputError: a missing or empty file, a short line, a bad coordinate, start >= end.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    intervals = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for n, line in enumerate(handle, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            if len(fields) < 3:
                raise InputError(f"{path}:{n}: a BED line needs chrom, start and end")
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise InputError(f"{path}:{n}: start and end must be integers") from None
            if not 0 <= start < end:
                raise InputError(f"{path}:{n}: need 0 <= start < end; got {start}, {end}")
            name = fields[3] if len(fields) > 3 and fields[3] not in ("", ".") else f"{fields[0]}:{start}-{end}"
            strand = fields[5] if len(fields) > 5 else "+"
            if strand not in ("+", "-", "."):
                raise InputError(f"{path}:{n}: strand must be +, - or .; got {strand!r}")
            intervals.append(Interval(fields[0], start, end, name, strand))
    if not intervals:
        raise InputError(f"{path}: no intervals")
    return intervals


def bed_records(fasta: str | os.PathLike, bed: str | os.PathLike) -> Iterator[Record]:
    """The sequences of the BED intervals, in reference order, one reference record in memory at a time.

    Raises:
        InputError: an interval past its chromosome's end, or chromosomes missing from the reference.
    """
    by_chrom: dict[str, list[Interval]] = defaultdict(list)
    for interval in read_bed(bed):
        by_chrom[interval.chrom].append(interval)
    for record in read_records(fasta):
        for interval in by_chrom.pop(record.id, []):
            if interval.end > len(record.seq):
                raise InputError(
                    f"{bed}: {interval.name} ends at {interval.end}, past the end of {record.id} ({len(record.seq)})"
                )
            seq = record.seq[interval.start : interval.end]
            yield Record(interval.name, reverse_complement_text(seq) if interval.strand == "-" else seq)
    if by_chrom:
        raise InputError(f"{bed}: chromosomes not in {fasta}: {', '.join(sorted(by_chrom)[:5])}")
