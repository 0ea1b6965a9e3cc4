"""Volume I/O (NIfTI, DICOM files and series), Hounsfield preprocessing, and bad volume files."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from longseq.core.io import InputError
from longseq.vision.btb3d.volumes import (
    Volume,
    hu_to_unit,
    pad_to_grid,
    preprocess_ct,
    read_volume,
    unit_to_hu,
    write_nifti,
)

NIBABEL_DATA = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
CT_SLICE = get_testdata_file("CT_small.dcm")  # a real 128x128 CT slice shipped in the pydicom wheel


def write_singular_nifti(path) -> None:
    """A NIfTI file whose sform maps the slice axis to nothing (nibabel refuses to write one itself)."""
    header = nib.Nifti1Header()
    header.set_data_shape((8, 8, 9))
    header.set_data_dtype(np.float32)
    header["srow_x"], header["srow_y"], header["srow_z"] = [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]
    header["sform_code"], header["qform_code"], header["vox_offset"] = 1, 0, 352
    path.write_bytes(header.binaryblock + b"\0" * 4 + np.zeros((8, 8, 9), np.float32).tobytes(order="F"))


def write_huge_nifti(path) -> None:
    """A NIfTI header claiming 3000^3 float32 voxels (108 GB) followed by a few bytes."""
    header = nib.Nifti1Header()
    header.set_data_shape((3000, 3000, 3000))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    path.write_bytes(header.binaryblock + b"\0" * 4 + np.zeros(16, np.float32).tobytes())


def test_real_nifti_is_read_in_canonical_orientation(tmp_path):
    volume = read_volume(os.path.join(NIBABEL_DATA, "anatomical.nii"))
    assert volume.data.shape == (25, 41, 33) and volume.data.dtype == np.float32
    assert volume.spacing == (2.0, 2.0, 2.0)
    # A flipped copy of the same voxels reads back identically after canonicalisation.
    image = nib.load(os.path.join(NIBABEL_DATA, "anatomical.nii"))
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = image.shape[0] - 1
    flipped = nib.Nifti1Image(np.asanyarray(image.dataobj)[::-1].copy(), image.affine @ flip)
    nib.save(flipped, tmp_path / "flipped.nii.gz")
    np.testing.assert_array_equal(read_volume(tmp_path / "flipped.nii.gz").data, volume.data)


def test_nifti_round_trip_keeps_voxels_and_geometry(tmp_path):
    volume = read_volume(os.path.join(NIBABEL_DATA, "anatomical.nii"))
    for name in ("copy.nii", "copy.nii.gz"):
        write_nifti(volume, tmp_path / name)
        again = read_volume(tmp_path / name)
        np.testing.assert_array_equal(again.data, volume.data)
        np.testing.assert_allclose(again.affine, volume.affine)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.nii", "copy.nii.gz"]


def test_dicom_slice_in_hounsfield_units():
    volume = read_volume(CT_SLICE)
    ds = pydicom.dcmread(CT_SLICE)
    assert volume.data.shape == (1, 128, 128)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(volume.data[0], expected)
    assert volume.spacing[1:] == pytest.approx((0.661468, 0.661468))


def _write_series(directory, shifts, *, orientation=None):
    directory.mkdir()
    ds = pydicom.dcmread(CT_SLICE)
    for k, z in enumerate(shifts):
        ds.ImagePositionPatient = [0.0, 0.0, float(z)]
        ds.InstanceNumber = k
        if orientation is not None:
            ds.ImageOrientationPatient = orientation
        ds.PixelData = (np.full((128, 128), 100 * k, dtype=np.int16)).tobytes()
        ds.save_as(directory / f"slice{k:02d}.dcm")


def test_dicom_series_sorted_along_the_normal(tmp_path):
    _write_series(tmp_path / "series", [6.0, 0.0, 3.0])  # files out of order
    volume = read_volume(tmp_path / "series")
    assert volume.data.shape == (3, 128, 128)
    assert volume.spacing[0] == pytest.approx(3.0)
    slope, intercept = float(pydicom.dcmread(CT_SLICE).RescaleSlope), float(pydicom.dcmread(CT_SLICE).RescaleIntercept)
    np.testing.assert_allclose(volume.data[:, 0, 0], [100 * k * slope + intercept for k in (1, 2, 0)])


def test_hounsfield_preprocessing():
    hu = np.array([-3000.0, -1000.0, 0.0, 500.0, 1000.0, 3000.0], dtype=np.float32)
    np.testing.assert_allclose(hu_to_unit(hu), [-1, -1, 0, 0.5, 1, 1])
    np.testing.assert_allclose(unit_to_hu(hu_to_unit(hu)), np.clip(hu, -1000, 1000))
    volume = Volume(data=np.zeros((9, 20, 30), np.float32), spacing=(3.0, 1.5, 1.5), affine=np.diag([1.5, 1.5, 3.0, 1]))
    out = preprocess_ct(volume, spacing=(1.5, 0.75, 0.75))
    assert out.data.shape == (18, 40, 60)
    assert out.spacing == pytest.approx((1.5, 0.75, 0.75))
    np.testing.assert_allclose(np.diag(out.affine), [0.75, 0.75, 1.5, 1])
    # A single slice stays a single slice (a 2D image).
    assert preprocess_ct(read_volume(CT_SLICE)).data.shape[0] == 1


@pytest.mark.parametrize(
    "spacing, window, message",
    [
        ((-1.5, 0.75, 0.75), (-1000.0, 1000.0), "spacing must be three positive numbers"),
        ((0.0, 0.75, 0.75), (-1000.0, 1000.0), "spacing"),
        ((float("nan"), 1.0, 1.0), (-1000.0, 1000.0), "spacing"),
        ((1.5, 0.75, 0.75), (1000.0, -1000.0), "low < high"),
        ((1.5, 0.75, 0.75), (0.0, 0.0), "low < high"),
        ((1.5, 0.75, 0.75), (float("nan"), 1000.0), "low < high"),
        ((1e-4, 1e-4, 1e-4), (-1000.0, 1000.0), "voxels, more than"),
    ],
)
def test_bad_preprocessing_settings_are_refused(spacing, window, message):
    volume = Volume(data=np.zeros((9, 20, 30), np.float32), spacing=(3.0, 1.5, 1.5), affine=np.eye(4))
    with pytest.raises(InputError, match=message):
        preprocess_ct(volume, spacing=spacing, window=window)


def test_pad_to_grid():
    padded = pad_to_grid(np.zeros((10, 20, 17), np.float32), 8, 16)
    assert padded.shape == (17, 32, 32)
    assert padded[10:].min() == -1 and padded[:10, :20, :17].max() == 0
    assert pad_to_grid(np.zeros((9, 16, 16), np.float32), 8, 16).shape == (9, 16, 16)


def bad_inputs(tmp_path):
    """(path, message) for each kind of bad input the issue names."""
    cases = []
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00 this is not a gzip stream")
    cases.append((corrupt, "cannot read as NIfTI"))
    truncated = tmp_path / "truncated.nii"
    with open(os.path.join(NIBABEL_DATA, "anatomical.nii"), "rb") as f:
        truncated.write_bytes(f.read(2000))
    cases.append((truncated, "cannot read as NIfTI"))
    text = tmp_path / "notes.txt"
    text.write_text("not a scan")
    cases.append((text, "not a volume file"))
    not_dicom = tmp_path / "fake.dcm"
    not_dicom.write_bytes(b"\0" * 64)
    cases.append((not_dicom, "cannot read as DICOM"))
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 9, 2), np.float32), np.eye(4)), tmp_path / "series4d.nii.gz")
    cases.append((tmp_path / "series4d.nii.gz", "4D image"))
    write_singular_nifti(tmp_path / "singular.nii")
    cases.append((tmp_path / "singular.nii", "orientation"))
    ds = pydicom.dcmread(CT_SLICE)
    ds.ImageOrientationPatient = [1, 0, 0, 1, 0, 0]
    ds.save_as(tmp_path / "parallel.dcm")
    cases.append((tmp_path / "parallel.dcm", "ImageOrientationPatient"))
    del ds.ImageOrientationPatient
    ds.save_as(tmp_path / "no_orientation.dcm")
    cases.append((tmp_path / "no_orientation.dcm", "ImageOrientationPatient"))
    nib.save(nib.Nifti1Image(np.zeros((0, 8, 8), np.float32), np.eye(4)), tmp_path / "empty.nii")
    cases.append((tmp_path / "empty.nii", "empty volume"))
    (tmp_path / "empty_dir").mkdir()
    cases.append((tmp_path / "empty_dir", "no files"))
    write_huge_nifti(tmp_path / "huge.nii")
    cases.append((tmp_path / "huge.nii", "3000x3000x3000 = 27,000,000,000 voxels, more than"))
    ds = pydicom.dcmread(CT_SLICE)
    ds.Rows, ds.Columns = 65535, 65535
    ds.save_as(tmp_path / "huge.dcm")
    cases.append((tmp_path / "huge.dcm", "65535x65535 = 4,294,836,225 voxels"))
    return cases


def test_bad_inputs_raise_one_line_input_errors(tmp_path):
    for path, message in bad_inputs(tmp_path):
        with pytest.raises(InputError, match=message) as info:
            read_volume(path)
        assert "\n" not in str(info.value), path


def test_bad_series(tmp_path):
    _write_series(tmp_path / "uneven", [0.0, 1.0, 5.0])
    with pytest.raises(InputError, match="evenly spaced"):
        read_volume(tmp_path / "uneven")
    _write_series(tmp_path / "twice", [0.0, 0.0])
    with pytest.raises(InputError, match="share one position"):
        read_volume(tmp_path / "twice")
    with pytest.raises(InputError, match="no such file"):
        read_volume(tmp_path / "missing.nii.gz")
    with pytest.raises(InputError, match=r"\.nii"):
        write_nifti(read_volume(CT_SLICE), tmp_path / "out.png")
