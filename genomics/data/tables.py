"""Sequence tables: CSV, TSV or parquet files with a sequence column (labels or targets beside it), and the
GenomicBenchmarks directory layout."""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from longseq.core.io import InputError
from longseq.genomics.data.fasta import Record

Task = Literal["classification", "multilabel", "regression"]


@dataclass(frozen=True)
class LabelledSequences:
    """Sequences with their labels: class indices (``classes[label]`` is the label's text), or for multi-label and
    regression tasks one list of float targets per sequence (``classes`` names the targets)."""

    sequences: list[str]
    labels: list[int] | list[list[float]]
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


def read_labelled(
    path: str | os.PathLike, *, classes: list[str] | None = None, task: Task = "classification"
) -> LabelledSequences:
    """Read labelled sequences from a table (CSV, TSV, parquet) or a GenomicBenchmarks split directory.

    - Tables: a header naming ``sequence`` is optional for a classification (without one the first two columns
      are sequence and label) and needed for the other tasks. A classification reads the ``label`` column (the
      Nucleotide Transformer downstream tasks' layout: sequence, label, name); a multi-label or regression table
      reads every column but ``sequence``, ``name`` and ``id`` as one target each (a single ``label`` column, if
      there is one, is the only target); multi-label targets are 0 or 1.
    - A directory: GenomicBenchmarks' layout of one split (``<dataset>/train`` or ``<dataset>/test``): one
      subdirectory per class, one sequence per file (classification only).

    Args:
        classes: the class or target names in index order (the training split's, or the model's); by default the
            sorted distinct labels of a classification (numerically sorted when all are integers), the target
            columns of the other tasks.
        task: classification (labels: class indices), multilabel or regression (labels: float lists).

    Raises:
        InputError: a missing, empty or malformed file, a short row, an empty sequence or label, a label not in
            ``classes``, target columns that disagree with ``classes``, a target that is not a number (or not 0/1).
    """
    path = Path(path)
    if path.is_dir():
        if task != "classification":
            raise InputError(f"{path}: a GenomicBenchmarks directory holds classes; --task {task} needs a table")
        return _read_benchmark_split(path, classes)
    if task == "classification":
        return _read_classes(read_table(path, expect=("sequence", "label")), classes)
    return _read_targets(read_table(path), classes, task)


def _read_classes(table: Table, classes: list[str] | None) -> LabelledSequences:
    seq_col, label_col = (table.column("sequence"), table.column("label")) if table.header else (0, 1)
    sequences, texts = [], []
    for n, row in table.rows:
        if len(row) <= max(seq_col, label_col):
            raise InputError(f"{table.path}:{n}: expected a sequence and a label, got {len(row)} column(s)")
        seq, label = row[seq_col].strip(), row[label_col].strip()
        if not seq:
            raise InputError(f"{table.path}:{n}: empty sequence")
        if not label:
            raise InputError(f"{table.path}:{n}: empty label")
        sequences.append(seq)
        texts.append(label)
    return _indexed(table.path, sequences, texts, classes)


def _indexed(path: Path, sequences: list[str], texts: list[str], classes: list[str] | None) -> LabelledSequences:
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


def _read_targets(table: Table, names: list[str] | None, task: Task) -> LabelledSequences:
    if table.header is None:
        raise InputError(f"{table.path}: a {task} table needs a header naming its sequence and target columns")
    seq_col = table.column("sequence")
    label_col = table.column("label")
    columns = [label_col] if label_col is not None else [
        j for j, name in enumerate(table.header) if name not in ("sequence", "name", "id")
    ]  # fmt: skip
    found = [table.header[j] for j in columns]
    if not columns:
        raise InputError(f"{table.path}: no target columns beside the sequence")
    if names is not None and len(found) != len(names):
        raise InputError(
            f"{table.path}: {len(found)} target column(s) ({', '.join(found)}); the model has {len(names)}"
        )
    sequences, labels = [], []
    for n, row in table.rows:
        if len(row) <= max(seq_col, *columns):
            raise InputError(f"{table.path}:{n}: expected {len(table.header)} columns, got {len(row)}")
        seq = row[seq_col].strip()
        if not seq:
            raise InputError(f"{table.path}:{n}: empty sequence")
        try:
            values = [float(row[j]) for j in columns]
        except ValueError:
            raise InputError(f"{table.path}:{n}: a target is not a number: {[row[j] for j in columns]}") from None
        if task == "multilabel" and any(v not in (0.0, 1.0) for v in values):
            raise InputError(f"{table.path}:{n}: multi-label targets must be 0 or 1, got {[row[j] for j in columns]}")
        sequences.append(seq)
        labels.append(values)
    if not sequences:
        raise InputError(f"{table.path}: no labelled sequences")
    return LabelledSequences(sequences, labels, list(names) if names is not None else found)


def _read_benchmark_split(path: Path, classes: list[str] | None) -> LabelledSequences:
    """GenomicBenchmarks: ``<split>/<class>/<n>.txt``, each file one sequence (whitespace ignored)."""
    class_dirs = sorted(d for d in path.iterdir() if d.is_dir())
    if not class_dirs:
        raise InputError(f"{path}: no class directories (GenomicBenchmarks layout: <split>/<class>/<n>.txt)")
    sequences, texts = [], []
    for directory in class_dirs:
        for file in sorted(f for f in directory.iterdir() if f.is_file()):
            seq = "".join(file.read_text(encoding="ascii", errors="replace").split())
            if not seq:
                raise InputError(f"{file}: empty sequence")
            sequences.append(seq)
            texts.append(directory.name)
    return _indexed(path, sequences, texts, classes)
