"""Medical volumes in and out: NIfTI (nibabel), DICOM files and series (pydicom), Hounsfield preprocessing.

A `Volume` holds voxel values (d, h, w) as float32 (Hounsfield units for CT), the voxel spacing in mm along
(d, h, w) and the 4x4 voxel-to-world affine of the (x = w, y = h, z = d) index order. NIfTI volumes are brought to
the closest canonical (RAS+) orientation first, so d runs inferior -> superior, as axial CT slices do.

Every problem with a file (unreadable, not an image, 4D, no usable orientation, empty, a header claiming more than
`MAX_VOXELS` voxels) raises `core.io.InputError` with a one-line message naming the file, before the voxels are
read.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longseq.core.io import InputError, atomic_output

# BTB3D's preprocessing: CT-RATE volumes resampled to 1.5 mm between slices and 0.75 mm in-plane, HU in [-1000, 1000].
DEFAULT_SPACING = (1.5, 0.75, 0.75)
HU_WINDOW = (-1000.0, 1000.0)
# The largest volume read or resampled: 2**30 voxels are 4 GiB as float32 (a 512x512x241 CT has 63 M).
MAX_VOXELS = 2**30


@dataclass
class Volume:
    """Voxels (d, h, w), spacing (d, h, w) in mm, affine mapping (w, h, d, 1) indices to world mm."""

    data: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a NIfTI file (.nii, .nii.gz), a DICOM file (one slice or multi-frame) or a directory of DICOM slices."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path)
    if not path.is_file():
        raise InputError(f"no such file or directory: {path}")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return read_nifti(path)
    if name.endswith(".dcm") or _looks_like_dicom(path):
        return read_dicom_series([path])
    raise InputError(f"{path}: not a volume file (expected .nii, .nii.gz, .dcm or a directory of DICOM slices)")


def _looks_like_dicom(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def check_size(shape: tuple[int, ...], what: str) -> None:
    """Refuse a volume of more than `MAX_VOXELS` voxels before it is allocated."""
    voxels = math.prod(int(n) for n in shape)
    if voxels > MAX_VOXELS:
        size = "x".join(str(int(n)) for n in shape)
        raise InputError(f"{what}: {size} = {voxels:,} voxels, more than the {MAX_VOXELS:,} this tool handles")


def check_spacing(spacing: tuple[float, float, float] | None) -> None:
    """A voxel spacing (d, h, w) in mm: three finite, positive numbers (or None: keep the grid)."""
    if spacing is None:
        return
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"spacing must be three positive numbers of mm (slices, rows, columns), got {list(spacing)}")


def check_window(window: tuple[float, float]) -> None:
    """An intensity window (low, high): finite, with low < high."""
    if len(window) != 2 or not all(math.isfinite(v) for v in window) or not window[0] < window[1]:
        raise InputError(f"the HU window must be two finite numbers [low, high] with low < high, got {list(window)}")


def _check_voxels(data: np.ndarray, path: Path) -> np.ndarray:
    if data.size == 0 or 0 in data.shape:
        raise InputError(f"{path}: empty volume (shape {tuple(data.shape)})")
    data = np.asarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        raise InputError(f"{path}: the volume holds NaN or infinite values")
    return data


def check_affine(affine: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """A finite, non-singular 4x4 voxel-to-world affine, as float64."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InputError(f"{path}: invalid orientation metadata (the voxel-to-world affine is not a finite 4x4 matrix)")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(f"{path}: invalid orientation metadata (the voxel axes are degenerate: singular affine)")
    return affine


def read_nifti(path: str | os.PathLike) -> Volume:
    """A 3D NIfTI volume (a 2D image is read as one slice), reoriented to canonical RAS+, as (d, h, w) = (z, y, x)."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    try:
        image = nib.load(str(path))
        check_size(image.shape, str(path))
        data = image.get_fdata(dtype=np.float32)
    except InputError:
        raise
    except (ImageFileError, OSError, EOFError, ValueError, zlib.error) as err:
        raise InputError(f"{path}: cannot read as NIfTI (corrupt or not an image): {_first_line(err)}") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        shape = tuple(data.shape)
        raise InputError(f"{path}: a {data.ndim}D image of shape {shape}; expected a 3D volume (not a time series)")
    data = _check_voxels(data, path)
    check_affine(image.affine, path)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, image.affine))
    data = np.asarray(canonical.dataobj, dtype=np.float32).transpose(2, 1, 0)
    zooms = [float(z) for z in canonical.header.get_zooms()[:3]]
    return Volume(data=np.ascontiguousarray(data), spacing=(zooms[2], zooms[1], zooms[0]), affine=canonical.affine)


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def read_dicom_series(source: Path | list[Path]) -> Volume:
    """One DICOM file (single or multi-frame) or the slices of one series (a directory), sorted along the normal."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = sorted(p for p in source.iterdir() if p.is_file()) if isinstance(source, Path) else list(source)
    where = source if isinstance(source, Path) else files[0]
    if not files:
        raise InputError(f"{where}: the directory holds no files")
    datasets = []
    for file in files:
        try:
            datasets.append(pydicom.dcmread(file))
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError) as err:
            raise InputError(f"{file}: cannot read as DICOM (corrupt or not DICOM): {_first_line(err)}") from None
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series) > 1:
        raise InputError(f"{where}: holds {len(series)} DICOM series; pass a directory with one series")
    if len(datasets) == 1:
        return _dicom_volume(datasets[0], files[0])
    return _dicom_stack(datasets, where)


def _pixels_hu(ds, file: Path) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    if "PixelData" not in ds:
        raise InputError(f"{file}: the DICOM file has no pixel data")
    check_size(_dicom_shape(ds, file), str(file))
    try:
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises many types for undecodable pixel data
        raise InputError(f"{file}: cannot decode the DICOM pixel data: {_first_line(err)}") from None
    transform = _frame_item(ds, "PixelValueTransformationSequence")
    if "RescaleSlope" not in ds and transform is not None:
        # Enhanced (multi-frame) files keep the rescale in a functional group shared by the frames.
        slope, intercept = float(transform.get("RescaleSlope", 1.0)), float(transform.get("RescaleIntercept", 0.0))
        return (pixels.astype(np.float32) * slope + intercept).astype(np.float32)
    return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)


def _dicom_shape(ds, file: Path) -> tuple[int, int, int]:
    """(frames, rows, columns) as the header claims them."""
    try:
        return int(ds.get("NumberOfFrames") or 1), int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    except (TypeError, ValueError):
        raise InputError(f"{file}: malformed NumberOfFrames, Rows or Columns") from None


def _orientation(ds, file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(row direction, column direction) unit vectors from ImageOrientationPatient."""
    values = ds.get("ImageOrientationPatient")
    try:
        cosines = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        cosines = np.zeros(0)
    if cosines.shape != (6,):
        raise InputError(f"{file}: missing or malformed ImageOrientationPatient (need 6 direction cosines)")
    row, col = cosines[:3], cosines[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(f"{file}: invalid ImageOrientationPatient: the row and column directions are not orthonormal")
    return row, col


def _pixel_spacing(ds, file: Path) -> tuple[float, float]:
    spacing = ds.get("PixelSpacing")
    try:
        row_spacing, col_spacing = (float(v) for v in spacing)
    except (TypeError, ValueError):
        raise InputError(f"{file}: missing or malformed PixelSpacing") from None
    if row_spacing <= 0 or col_spacing <= 0:
        raise InputError(f"{file}: PixelSpacing must be positive")
    return row_spacing, col_spacing


def _affine(row, col, normal, origin, spacing_dhw) -> np.ndarray:
    dz, dy, dx = spacing_dhw
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = row * dx, col * dy, normal * dz, origin
    return affine


def _frame_item(ds, keyword: str, frame: int = 0):
    """An enhanced (multi-frame) DICOM's functional-group item: per-frame first, then shared; None if absent."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        sequence = ds.get(groups)
        if sequence and len(sequence) > index and sequence[index].get(keyword):
            return sequence[index].get(keyword)[0]
    return None


def _dicom_volume(ds, file: Path) -> Volume:
    """A single-slice or multi-frame DICOM file; enhanced files keep their geometry in functional groups."""
    from pydicom import Dataset

    pixels = _pixels_hu(ds, file)
    if pixels.ndim not in (2, 3):
        raise InputError(f"{file}: pixel data of shape {pixels.shape} is not an image or a stack of frames")
    data = _check_voxels(pixels if pixels.ndim == 3 else pixels[None], file)
    geometry, positions = ds, [ds.get("ImagePositionPatient")]
    if "ImageOrientationPatient" not in ds and ds.get("SharedFunctionalGroupsSequence"):
        geometry = Dataset()
        plane, measures = _frame_item(ds, "PlaneOrientationSequence"), _frame_item(ds, "PixelMeasuresSequence")
        if plane is not None:
            geometry.ImageOrientationPatient = plane.ImageOrientationPatient
        if measures is not None:
            geometry.PixelSpacing = measures.get("PixelSpacing")
            geometry.SliceThickness = measures.get("SliceThickness")
        positions = [
            item.get("ImagePositionPatient") if (item := _frame_item(ds, "PlanePositionSequence", f)) else None
            for f in range(data.shape[0])
        ]
    row, col = _orientation(geometry, file)
    dy, dx = _pixel_spacing(geometry, file)
    normal = np.cross(row, col)
    origin = np.asarray([float(v) for v in positions[0]]) if positions[0] is not None else np.zeros(3)
    dz = float(geometry.get("SliceThickness") or 1.0)
    if data.shape[0] > 1 and all(p is not None for p in positions):
        offsets = np.asarray([[float(v) for v in p] for p in positions]) @ normal
        order = np.argsort(offsets)
        steps = np.diff(offsets[order])
        if (steps <= 1e-6).any() or steps.max() - steps.min() > 0.01 * steps.mean():
            raise InputError(f"{file}: the frames are not evenly spaced along the slice normal")
        data, origin, dz = data[order], np.asarray([float(v) for v in positions[order[0]]]), float(steps.mean())
    affine = _affine(row, col, normal, origin, (dz, dy, dx))
    return Volume(data=data, spacing=(dz, dy, dx), affine=affine)


def _dicom_stack(datasets: list, where: Path) -> Volume:
    """Single-frame slices of one series, sorted by their position along the slice normal."""
    row, col = _orientation(datasets[0], where)
    normal = np.cross(row, col)
    positions = []
    for ds in datasets:
        position = ds.get("ImagePositionPatient")
        if position is None or len(position) != 3:
            raise InputError(f"{where}: a slice has no ImagePositionPatient; cannot order the series")
        if not np.allclose(_orientation(ds, where), (row, col), atol=1e-3):
            raise InputError(f"{where}: the slices do not share one orientation")
        positions.append(np.asarray([float(v) for v in position]))
    order = np.argsort([p @ normal for p in positions])
    offsets = np.asarray([positions[i] @ normal for i in order])
    steps = np.diff(offsets)
    if (steps <= 1e-6).any():
        raise InputError(f"{where}: two slices share one position; is this more than one acquisition?")
    if steps.max() - steps.min() > 0.01 * steps.mean():
        raise InputError(f"{where}: the slices are not evenly spaced ({steps.min():.3g} to {steps.max():.3g} mm)")
    frames, rows, columns = _dicom_shape(datasets[0], where)
    check_size((len(datasets) * frames, rows, columns), str(where))
    slices = [_pixels_hu(datasets[i], where) for i in order]
    if len({s.shape for s in slices}) > 1 or slices[0].ndim != 2:
        raise InputError(f"{where}: the slices differ in size or are not single-frame images")
    data = _check_voxels(np.stack(slices), where)
    dy, dx = _pixel_spacing(datasets[0], where)
    dz = float(steps.mean())
    affine = _affine(row, col, normal, positions[order[0]], (dz, dy, dx))
    return Volume(data=data, spacing=(dz, dy, dx), affine=affine)


def write_nifti(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a volume as NIfTI-1 (gzip-compressed for .nii.gz), atomically (temporary file, then rename)."""
    import nibabel as nib

    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise InputError(f"{path}: output must end in .nii or .nii.gz")
    image = nib.Nifti1Image(np.ascontiguousarray(volume.data.transpose(2, 1, 0)), volume.affine)
    image.header.set_xyzt_units("mm")
    payload = image.to_bytes()
    if path.name.lower().endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6)
    with atomic_output(path) as tmp:
        tmp.write_bytes(payload)
    return path


def resample(data: np.ndarray, spacing, target_spacing) -> np.ndarray:
    """Trilinear resampling of (d, h, w) from `spacing` to `target_spacing` (mm), as BTB3D's preprocessing."""
    import torch
    import torch.nn.functional as F

    size = [max(1, int(n * s / t)) for n, s, t in zip(data.shape, spacing, target_spacing)]
    check_size(size, f"resampling {'x'.join(map(str, data.shape))} voxels to a spacing of {list(target_spacing)} mm")
    if list(data.shape) == size:
        return data
    x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[None, None]
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)[0, 0].numpy()


def hu_to_unit(data: np.ndarray, window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """Clip to the HU window and scale it linearly to [-1, 1] (BTB3D: clip [-1000, 1000], divide by 1000)."""
    low, high = window
    return ((np.clip(data, low, high) - (low + high) / 2) / ((high - low) / 2)).astype(np.float32)


def unit_to_hu(data: np.ndarray, window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    low, high = window
    return (np.asarray(data, dtype=np.float32) * ((high - low) / 2) + (low + high) / 2).astype(np.float32)


def preprocess_ct(
    volume: Volume,
    *,
    spacing: tuple[float, float, float] | None = DEFAULT_SPACING,
    window: tuple[float, float] = HU_WINDOW,
) -> Volume:
    """Resample to `spacing` (None keeps the voxel grid), clip to the HU window, scale to [-1, 1].

    The affine is updated to the new voxel size (same origin and axes).

    Raises:
        InputError: a spacing that is not three positive numbers, a window that is not low < high, or a resampled
            volume over `MAX_VOXELS`.
    """
    check_spacing(spacing)
    check_window(window)
    data, new_spacing = volume.data, volume.spacing
    if spacing is not None and data.shape[0] == 1:
        spacing = (volume.spacing[0], *spacing[1:])  # a single slice stays a single slice (a 2D image)
    if spacing is not None:
        data = resample(data, volume.spacing, spacing)
        new_spacing = tuple(float(s * n / m) for s, n, m in zip(volume.spacing, volume.data.shape, data.shape))
    affine = volume.affine.copy()
    for axis, (old, new) in enumerate(zip(volume.spacing[::-1], new_spacing[::-1])):
        affine[:3, axis] *= new / old
    return Volume(data=hu_to_unit(data, window), spacing=new_spacing, affine=affine)


def pad_to_grid(data: np.ndarray, depth_multiple: int, spatial_multiple: int, value: float = -1.0) -> np.ndarray:
    """Pad (d, h, w) at the end so d = 1 + k * depth_multiple and h, w are multiples of spatial_multiple.

    The padding value -1 is air after `hu_to_unit`, so padded voxels look like the space around a patient.
    """
    d, h, w = data.shape
    pad_d = (-(d - 1)) % depth_multiple
    pad_h, pad_w = (-h) % spatial_multiple, (-w) % spatial_multiple
    return np.pad(data, ((0, pad_d), (0, pad_h), (0, pad_w)), constant_values=value)
