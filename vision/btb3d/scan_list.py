"""Which volumes a whole-dataset `vision tokenize3d` run encodes, and CT-RATE's metadata for them.

- ``--scans DIR``: every NIfTI file under DIR (recursively), named by its file name (``train_1_a_1.nii.gz`` ->
  ``train_1_a_1``), as CT-RATE's tree lays them out.
- ``--scans list.csv``: a ``path`` column (NIfTI file, DICOM file or DICOM series directory; relative to the CSV's
  folder) and an optional ``id`` column (default: the file name).
- ``--metadata meta.csv``: CT-RATE's metadata (``VolumeName``, ``RescaleSlope``, ``RescaleIntercept``,
  ``XYSpacing`` such as ``[0.75, 0.75]``, ``ZSpacing``): the stored values become Hounsfield units as
  ``slope * value + intercept`` and the voxel spacing is the table's, as the official preprocessing does.

Problems with the list itself (no volumes, a missing column, two volumes with one id) are `InputError`s; problems
with one volume (missing, unreadable, not 3D, not in the metadata) are that volume's, reported at the end of the run.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longseq.core.io import InputError
from longseq.vision.btb3d.volumes import Volume

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class ScanEntry:
    id: str
    path: Path


@dataclass(frozen=True)
class Metadata:
    """One volume's CT-RATE metadata: HU = slope * stored + intercept; spacing (d, h, w) in mm."""

    slope: float
    intercept: float
    spacing: tuple[float, float, float]

    def apply(self, volume: Volume) -> Volume:
        """The volume in Hounsfield units at the table's spacing (the affine rescaled to it, same origin)."""
        affine = volume.affine.copy()
        for axis, (old, new) in enumerate(zip(volume.spacing[::-1], self.spacing[::-1])):
            affine[:3, axis] *= new / old
        data = (volume.data * self.slope + self.intercept).astype(np.float32)
        return Volume(data=data, spacing=self.spacing, affine=affine)


def volume_id(path: Path) -> str:
    name = path.name
    for suffix in (*NIFTI_SUFFIXES, ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_scans(scans: Path) -> list[ScanEntry]:
    """The volumes of ``--scans`` (a directory or a CSV), in a fixed order.

    Raises:
        InputError: no such path, no volumes, a CSV without a ``path`` column, or one id twice.
    """
    scans = Path(scans)
    if scans.is_dir():
        paths = sorted(p for p in scans.rglob("*") if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES))
        entries = [ScanEntry(volume_id(p), p) for p in paths]
    elif scans.is_file() and scans.suffix.lower() == ".csv":
        entries = [
            ScanEntry(row.get("id") or volume_id(Path(row["path"])), scans.parent / row["path"])
            for row in _read_csv(scans, ("path",))
        ]
    else:
        raise InputError(f"--scans {scans}: not a directory of NIfTI files or a .csv list of volumes")
    if not entries:
        raise InputError(f"--scans {scans}: no volumes (.nii / .nii.gz files, or rows of a path column)")
    seen: dict[str, Path] = {}
    for entry in entries:
        if entry.id in seen:
            raise InputError(f"--scans {scans}: two volumes are named {entry.id} ({seen[entry.id]}, {entry.path})")
        seen[entry.id] = entry.path
    return entries


def read_metadata(path: Path) -> dict[str, Metadata]:
    """CT-RATE's metadata CSV, by volume id (``VolumeName`` without its suffix)."""
    table = {}
    for line, row in enumerate(_read_csv(Path(path), ("VolumeName", "RescaleSlope", "RescaleIntercept",
                                                      "XYSpacing", "ZSpacing")), start=2):  # fmt: skip
        try:
            xy = json.loads(row["XYSpacing"]) if row["XYSpacing"].strip().startswith("[") else [row["XYSpacing"]] * 2
            spacing = (float(row["ZSpacing"]), float(xy[0]), float(xy[1]))
            meta = Metadata(float(row["RescaleSlope"]), float(row["RescaleIntercept"]), spacing)
        except (ValueError, TypeError, IndexError) as err:
            raise InputError(f"{path}, line {line}: unreadable metadata ({err})") from None
        numbers = (meta.slope, meta.intercept, *meta.spacing)
        if not all(math.isfinite(v) for v in numbers) or min(spacing) <= 0 or meta.slope == 0:
            raise InputError(f"{path}, line {line}: slope must be non-zero and spacings positive, got {row}")
        table[volume_id(Path(row["VolumeName"]))] = meta
    return table


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: no {', '.join(missing)} column (has: {', '.join(reader.fieldnames or [])})")
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"cannot read {path}: {err}") from None
