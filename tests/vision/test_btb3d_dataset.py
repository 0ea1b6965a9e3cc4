"""`vision tokenize3d --scans` over a dataset: one file per volume with ids and embeddings, resume by skipping,
CT-RATE metadata, per-volume failures named at the end, `decode3d` from either form, and 2 processes = 1."""

from __future__ import annotations

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from longseq.vision.btb3d.model import BTB3D
from longseq.vision.btb3d.tokens_file import read_tokens
from longseq.vision.btb3d.volumes import read_volume
from longseq.vision.cli import main
from tests.vision.test_btb3d_volumes import NIBABEL_DATA

ARGS = ["--model", "btb3d-tiny", "--spacing", "[4, 4, 4]"]


@pytest.fixture
def dataset(tmp_path):
    """Two real MRI volumes (nibabel's test data, one in a sub-folder) and one 4D image."""
    root = tmp_path / "scans"
    (root / "sub").mkdir(parents=True)
    image = nib.load(os.path.join(NIBABEL_DATA, "anatomical.nii"))
    data = np.asanyarray(image.dataobj).astype(np.float32)
    nib.save(nib.Nifti1Image(data, image.affine), root / "a_1.nii.gz")
    nib.save(nib.Nifti1Image(data[::-1].copy() * 0.5 - 100, image.affine), root / "sub" / "b_1.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), root / "c_4d.nii.gz")
    return root


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_directory_gives_one_file_per_volume_and_resumes(dataset, tmp_path, capsys):
    out = tmp_path / "tokens"
    code, stdout, err = _run(["tokenize3d", "--scans", str(dataset), "--output", str(out), *ARGS], capsys)
    # the 4D image is refused by name, at the end, in one line; the others are written
    assert code == 2 and err.count("\n") == 1 and "1 of 3 volumes failed" in err and "c_4d (" in err, err
    assert "2 volumes tokenized" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["a_1.npz", "b_1.npz"]
    tokens = read_tokens(out / "a_1.npz")
    bits = BTB3D.from_pretrained("btb3d-tiny").config.token_bits
    assert tokens.ids.shape == (3, 3, 2) and tokens.embeddings.shape == (bits, 3, 3, 2)
    assert set(np.unique(tokens.embeddings)) <= {-1.0, 1.0}
    # the embeddings' signs are the ids' bits (most significant first, as lfq.indices_to_codes)
    weights = 2 ** np.arange(bits - 1, -1, -1)
    np.testing.assert_array_equal(((tokens.embeddings > 0) * weights[:, None, None, None]).sum(0), tokens.ids)

    # a second run skips what is there: remove one file and only it is written again
    kept = (out / "a_1.npz").stat().st_mtime_ns
    (out / "b_1.npz").unlink()
    (dataset / "c_4d.nii.gz").unlink()
    code, stdout, err = _run(["tokenize3d", "--scans", str(dataset), "--output", str(out), *ARGS], capsys)
    assert code == 0 and "1 volumes tokenized, 1 already there" in stdout, err
    assert (out / "a_1.npz").stat().st_mtime_ns == kept and (out / "b_1.npz").is_file()


def test_a_csv_list_with_ct_rate_metadata(dataset, tmp_path, capsys):
    (dataset / "list.csv").write_text("path,id\na_1.nii.gz,first\nsub/b_1.nii.gz,\nmissing.nii.gz,gone\n")
    (tmp_path / "meta.csv").write_text(
        "VolumeName,RescaleSlope,RescaleIntercept,XYSpacing,ZSpacing\n"
        'first.nii.gz,2.0,-1024,"[3.0, 3.0]",5.0\n'
        'b_1.nii.gz,1,0,"[2.0, 2.0]",2.0\n'
    )
    out = tmp_path / "tokens"
    argv = [
        "tokenize3d",
        "--scans",
        str(dataset / "list.csv"),
        "--output",
        str(out),
        "--metadata",
        str(tmp_path / "meta.csv"),
        *ARGS,
    ]
    code, stdout, err = _run(argv, capsys)
    assert code == 2 and "1 of 3 volumes failed" in err and "gone (no such file or directory" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["b_1.npz", "first.npz"]
    # the table's spacing replaces the header's: 25 x 41 x 33 voxels of 5 x 3 x 3 mm resampled to 4 mm
    first = read_tokens(out / "first.npz")
    assert first.shape == (25 * 5 // 4, 41 * 3 // 4, 33 * 3 // 4)
    # a volume the table lacks is that volume's failure
    (tmp_path / "meta.csv").write_text("VolumeName,RescaleSlope,RescaleIntercept,XYSpacing,ZSpacing\n")
    code, _, err = _run([*argv[:4], str(tmp_path / "again"), *argv[5:]], capsys)
    assert code == 2 and "3 of 3 volumes failed" in err and "first is not in --metadata" in err, err


def test_metadata_rescales_to_hounsfield_units():
    from longseq.vision.btb3d.scan_list import Metadata

    volume = read_volume(os.path.join(NIBABEL_DATA, "anatomical.nii"))
    hu = Metadata(slope=2.0, intercept=-1024.0, spacing=(5.0, 3.0, 3.0)).apply(volume)
    np.testing.assert_allclose(hu.data, volume.data * 2 - 1024)
    assert hu.spacing == (5.0, 3.0, 3.0)
    np.testing.assert_allclose(np.linalg.norm(hu.affine[:3, :3], axis=0), [3.0, 3.0, 5.0])
    np.testing.assert_allclose(hu.affine[:3, 3], volume.affine[:3, 3])


def test_decode3d_takes_ids_or_embeddings(dataset, tmp_path, capsys):
    out, model = tmp_path / "tokens", tmp_path / "model"
    BTB3D.from_pretrained("btb3d-tiny").save_pretrained(model)  # one set of weights for every command
    _run(["tokenize3d", "--scans", str(dataset), "--output", str(out), *ARGS, "--model", str(model)], capsys)
    with np.load(out / "a_1.npz") as archive:
        fields = {k: archive[k] for k in archive.files}
    np.savez(tmp_path / "codes_only.npz", **{k: v for k, v in fields.items() if k != "ids"})
    np.savez(tmp_path / "ids_only.npz", **{k: v for k, v in fields.items() if k != "embeddings"})
    for name in ("codes_only", "ids_only"):
        assert (
            main(["decode3d", "--tokens", str(tmp_path / f"{name}.npz"), "--output", str(tmp_path / f"{name}.nii")])
            == 0
        )
    np.testing.assert_array_equal(
        read_volume(tmp_path / "codes_only.nii").data, read_volume(tmp_path / "ids_only.nii").data
    )
    fields["embeddings"] = -fields["embeddings"]
    np.savez(tmp_path / "disagree.npz", **fields)
    code, _, err = _run(
        ["decode3d", "--tokens", str(tmp_path / "disagree.npz"), "--output", str(tmp_path / "x.nii")], capsys
    )
    assert code == 2 and "the ids and the embeddings' signs disagree" in err and not (tmp_path / "x.nii").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give one of --scan (one volume) and --scans"),
        (["--scans", "{root}", "--scan", "{root}/a_1.nii.gz"], "give one of --scan"),
        (["--scans", "{tmp}/nowhere"], "not a directory of NIfTI files or a .csv list"),
        (["--scans", "{tmp}/empty"], "no volumes"),
        (["--scans", "{tmp}/nopath.csv"], "no path column"),
        (["--scans", "{tmp}/twice.csv"], "two volumes are named a_1"),
        (["--scans", "{root}", "--devices", "0"], "--devices and --num_nodes must be >= 1"),
        (["--scan", "{root}/a_1.nii.gz", "--devices", "2"], "apply to --scans"),
        (["--scans", "{root}", "--metadata", "{tmp}/nopath.csv"], "no VolumeName, RescaleSlope"),
    ],
)
def test_bad_dataset_inputs_write_nothing(dataset, tmp_path, capsys, extra, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "nopath.csv").write_text("file\na.nii\n")
    (tmp_path / "twice.csv").write_text(f"path\n{dataset}/a_1.nii.gz\n{dataset}/a_1.nii.gz\n")
    paths = {"root": dataset, "tmp": tmp_path}
    argv = ["tokenize3d", "--output", str(tmp_path / "out"), *ARGS, *[a.format(**paths) for a in extra]]
    code, _, err = _run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_processes_write_what_one_does(dataset, tmp_path):
    """--devices 2 (DDP on the CPU, Lightning runs the command again in a second process) = one process."""
    (dataset / "c_4d.nii.gz").unlink()
    nib.save(nib.load(dataset / "a_1.nii.gz"), dataset / "d_1.nii.gz")  # three volumes: an uneven split
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for devices in ("1", "2"):
        argv = ["tokenize3d", "--scans", str(dataset), "--output", str(tmp_path / devices), *ARGS, "--devices", devices]
        done = subprocess.run(
            [sys.executable, "-m", "longseq.vision.cli", *argv], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("3 volumes tokenized") == 1, done.stdout
    assert "MEMBER: 2/2" in done.stderr
    for name in ("a_1.npz", "b_1.npz", "d_1.npz"):
        one, two = read_tokens(tmp_path / "1" / name), read_tokens(tmp_path / "2" / name)
        np.testing.assert_array_equal(one.ids, two.ids)
        np.testing.assert_array_equal(one.embeddings, two.embeddings)
        np.testing.assert_array_equal(one.affine, two.affine)
    assert sorted(p.name for p in (tmp_path / "2").iterdir()) == ["a_1.npz", "b_1.npz", "d_1.npz"]
