"""Sequence files (FASTA, FASTQ, GenBank; gzipped or not) as a stream of records, and windows over them.

Records are read one at a time with Biopython's low-level parsers, so a file of any size streams, and a record
is held once as a string; windows are sliced from it as they are needed (tokenised per batch, never the whole
record at once). The format is recognised from the content (first non-blank line: ``>`` FASTA, ``@`` FASTQ,
``LOCUS`` GenBank) and gzip from its magic bytes, whatever the file is called.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from longseq.core.io import InputError

FORMATS = ("fasta", "fastq", "genbank")


@dataclass(frozen=True)
class Record:
    """One named sequence from a file. ``seq`` is the text as read (the tokenizer applies the base policy)."""

    id: str
    seq: str


def _open_text(path: Path) -> TextIO:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with open(path, "rb") as raw:
        magic = raw.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="ascii", errors="replace")
    return open(path, encoding="ascii", errors="replace")


def sniff_format(path: str | os.PathLike) -> str:
    """ "fasta", "fastq" or "genbank", from the first non-blank line.

    Raises:
        InputError: an empty file, or one that is none of the three.
    """
    path = Path(path)
    try:
        with _open_text(path) as handle:
            first = next((line.strip() for line in handle if line.strip()), None)
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path}: cannot read: {err}") from None
    if first is None:
        raise InputError(f"{path}: the file is empty")
    if first.startswith(">"):
        return "fasta"
    if first.startswith("@"):
        return "fastq"
    if first.startswith("LOCUS"):
        return "genbank"
    raise InputError(f"{path}: not FASTA, FASTQ or GenBank (the first line starts with {first[:20]!r})")


def _parse(handle: TextIO, fmt: str) -> Iterator[tuple[str, str]]:
    from Bio import SeqIO
    from Bio.SeqIO.FastaIO import SimpleFastaParser
    from Bio.SeqIO.QualityIO import FastqGeneralIterator

    if fmt == "fasta":
        yield from SimpleFastaParser(handle)
    elif fmt == "fastq":
        for title, seq, _ in FastqGeneralIterator(handle):
            yield title, seq
    else:
        for record in SeqIO.parse(handle, "genbank"):
            yield record.id, str(record.seq)


def read_records(path: str | os.PathLike, *, fmt: str | None = None) -> Iterator[Record]:
    """Stream the records of a FASTA, FASTQ or GenBank file (gzipped or not).

    Args:
        fmt: force a format instead of recognising it.

    Raises:
        InputError: an empty or unreadable file, a malformed record (named), an empty record, no records.
    """
    path = Path(path)
    fmt = fmt or sniff_format(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown sequence format {fmt!r}; expected one of {', '.join(FORMATS)}")
    count = 0
    try:
        with _open_text(path) as handle:
            for title, seq in _parse(handle, fmt):
                count += 1
                name = title.split(maxsplit=1)[0] if title.strip() else f"record{count}"
                if not seq:
                    raise InputError(f"{path}: record {name!r} is empty")
                yield Record(name, seq)
    except InputError:
        raise
    except (ValueError, EOFError, OSError, zlib.error) as err:
        where = f" after record {count}" if count else ""
        raise InputError(f"{path}: malformed {fmt.upper() if fmt != 'genbank' else 'GenBank'}{where}: {err}") from None
    if count == 0:
        raise InputError(f"{path}: no {fmt} records")


def window_starts(length: int, window: int, stride: int) -> range:
    """Starts of the windows over a sequence: 0, stride, 2 stride, ... until a window reaches the end.

    The last window may be shorter than ``window``; a stride above the window leaves gaps (sampling).
    """
    if window < 1 or stride < 1:
        raise InputError(f"window and stride must be positive; got window={window}, stride={stride}")
    if length <= window:
        return range(0, 1)
    return range(0, math.ceil((length - window) / stride) * stride + 1, stride)


def reverse_complement_text(seq: str) -> str:
    """The reverse complement of a sequence's text (IUPAC-aware, case kept)."""
    return seq.translate(_COMPLEMENT_TEXT)[::-1]


_COMPLEMENT_TEXT = str.maketrans("ACGTUNRYSWKMBDHVacgtunryswkmbdhv", "TGCAANYRSWMKVHDBtgcaanyrswmkvhdb")
