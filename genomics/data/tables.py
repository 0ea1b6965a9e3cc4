"""Labelled sequences for classification: CSV or TSV files with a sequence column and a label column."""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from longseq.core.io import InputError
from longseq.genomics.data.fasta import Record


@dataclass(frozen=True)
class LabelledSequences:
    """Sequences with integer labels; ``classes[label]`` is the label's text."""

    sequences: list[str]
    labels: list[int]
    classes: list[str]


@contextlib.contextmanager
def _long_fields() -> Iterator[None]:
    """Lift the csv module's field limit (128 KiB) while reading: a sequence may be as long as a model's context
    (a million bases for HyenaDNA)."""
    previous = csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


@dataclass(frozen=True)
class Table:
    """A table's rows as text: ``header`` (lower-cased names, or None when the first row holds data) and ``rows``
    of (line number, cells); a parquet file's rows count from 2, as if its column names were line 1."""

    path: Path
    header: list[str] | None
    rows: list[tuple[int, list[str]]]

    def column(self, *names: str) -> int | None:
        """The index of the first of ``names`` in the header, or None."""
        return next((self.header.index(n) for n in names if self.header and n in self.header), None)


def read_table(path: str | os.PathLike, *, expect: tuple[str, ...] = ("sequence",)) -> Table:
    """Read a CSV, TSV (by its .tsv name or a tab in its first line) or parquet file (by its .parquet name).

    The first row is a header when it names all of ``expect`` (any case); parquet files always have one.

    Raises:
        InputError: a missing, empty or malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return _read_parquet(path)
    with open(path, newline="", encoding="utf-8", errors="replace") as handle, _long_fields():
        first = handle.readline()
        handle.seek(0)
        delimiter = "\t" if path.suffix == ".tsv" or "\t" in first else ","
        try:
            rows = [(n, row) for n, row in enumerate(csv.reader(handle, delimiter=delimiter), 1) if any(row)]
        except csv.Error as err:
            raise InputError(f"{path}: not a CSV or TSV table: {err}") from None
    if not rows:
        raise InputError(f"{path}: the file is empty")
    header = [cell.strip().lower() for cell in rows[0][1]]
    if all(name in header for name in expect):
        return Table(path, header, rows[1:])
    return Table(path, None, rows)


def _read_parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: not a parquet file: {err}") from None
    columns = [[("" if v is None else str(v)) for v in table.column(i).to_pylist()] for i in range(table.num_columns)]
    rows = [(n + 2, [col[n] for col in columns]) for n in range(table.num_rows)]
    return Table(path, [name.strip().lower() for name in table.column_names], rows)


def read_sequences(path: str | os.PathLike) -> Iterator[Record]:
    """The sequences of a table (CSV, TSV, parquet) as records: the ``sequence`` column (else the first one),
    named by a ``name`` or ``id`` column (else ``row<line>``); other columns (labels) are ignored.

    Raises:
        InputError: a malformed table, a short row, an empty sequence, no rows.
    """
    table = read_table(path)
    seq_col = table.column("sequence") or 0
    name_col = table.column("name", "id")
    if not table.rows:
        raise InputError(f"{table.path}: no sequences")
    for n, row in table.rows:
        if len(row) <= max(seq_col, name_col or 0):
            raise InputError(f"{table.path}:{n}: expected a sequence column, got {len(row)} column(s)")
        seq = row[seq_col].strip()
        if not seq:
            raise InputError(f"{table.path}:{n}: empty sequence")
        yield Record(row[name_col].strip() if name_col is not None else f"row{n}", seq)


def read_labelled(path: str | os.PathLike, *, classes: list[str] | None = None) -> LabelledSequences:
    """Read ``sequence,label`` rows (TSV when the file ends in .tsv or its first line has a tab).

    A header row naming ``sequence`` and ``label`` (any case, any order, other columns ignored) is optional;
    without one the first two columns are sequence and label.

    Args:
        classes: the label texts in class-index order (e.g. from the training split); by default the sorted
            distinct labels of this file (numerically sorted when they are all integers).

    Raises:
        InputError: a missing or empty file, one that is not a table, a short row, an empty sequence, a label not
            in ``classes``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8", errors="replace") as handle, _long_fields():
        first = handle.readline()
        handle.seek(0)
        delimiter = "\t" if path.suffix == ".tsv" or "\t" in first else ","
        try:
            rows = [(n, row) for n, row in enumerate(csv.reader(handle, delimiter=delimiter), 1) if any(row)]
        except csv.Error as err:
            raise InputError(f"{path}: not a CSV or TSV table: {err}") from None
    if not rows:
        raise InputError(f"{path}: the file is empty")
    header = [cell.strip().lower() for cell in rows[0][1]]
    if "sequence" in header and "label" in header:
        seq_col, label_col = header.index("sequence"), header.index("label")
        rows = rows[1:]
    else:
        seq_col, label_col = 0, 1
    sequences, texts = [], []
    for n, row in rows:
        if len(row) <= max(seq_col, label_col):
            raise InputError(f"{path}:{n}: expected a sequence and a label, got {len(row)} column(s)")
        seq, label = row[seq_col].strip(), row[label_col].strip()
        if not seq:
            raise InputError(f"{path}:{n}: empty sequence")
        if not label:
            raise InputError(f"{path}:{n}: empty label")
        sequences.append(seq)
        texts.append(label)
    if not sequences:
        raise InputError(f"{path}: no labelled sequences")
    if classes is None:
        distinct = set(texts)
        numeric = all(t.lstrip("-").isdigit() for t in distinct)
        classes = sorted(distinct, key=int) if numeric else sorted(distinct)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(texts) - set(index))
    if unknown:
        raise InputError(f"{path}: labels {', '.join(unknown[:5])} are not among the classes {', '.join(classes)}")
    return LabelledSequences(sequences, [index[t] for t in texts], list(classes))
