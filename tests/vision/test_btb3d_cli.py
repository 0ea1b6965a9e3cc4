"""`vision tokenize3d / decode3d / convert3d` end to end on tiny models, bad inputs included."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from longseq.vision.btb3d.model import BTB3D
from longseq.vision.btb3d.volumes import read_volume
from longseq.vision.cli import main
from tests.vision.test_btb3d_volumes import CT_SLICE, NIBABEL_DATA, bad_inputs

FIXTURE = Path(__file__).parents[1] / "fixtures" / "btb3d_a"


def run_ok(argv, capsys):
    assert main(argv) == 0, capsys.readouterr().err


def run_bad(argv, capsys, message) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("vision: error:") and message in err, err


def test_nifti_round_trip_through_the_cli(tmp_path, capsys):
    model = tmp_path / "model"
    BTB3D.from_pretrained("btb3d-tiny").save_pretrained(model)
    scan = os.path.join(NIBABEL_DATA, "anatomical.nii")
    tokens, recon = tmp_path / "tokens.npz", tmp_path / "recon.nii.gz"
    argv = ["tokenize3d", "--scan", scan, "--out", str(tokens), "--model", str(model), "--spacing", "[4, 4, 4]"]
    run_ok(argv, capsys)
    with np.load(tokens) as data:
        # 25x41x33 at 2 mm -> 12x20x16 at 4 mm, padded to 17x24x16 -> 3x3x2 tokens
        assert data["ids"].shape == (3, 3, 2) and tuple(data["shape"]) == (12, 20, 16)
        assert data["ids"].max() < 2**8
    run_ok(["decode3d", "--tokens", str(tokens), "--out", str(recon)], capsys)
    volume = read_volume(recon)
    assert volume.data.shape == (12, 20, 16)
    # The resampled grid covers the scan's extent: 25 * 2 mm over 12 slices, etc.
    assert volume.spacing == pytest.approx((50 / 12, 82 / 20, 66 / 16))
    assert np.isfinite(volume.data).all()
    # Same orientation as the scan: the world position of voxel (0, 0, 0) is kept.
    np.testing.assert_allclose(volume.affine[:3, 3], read_volume(scan).affine[:3, 3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "recon.nii.gz", "tokens.npz"]


def test_a_ct_slice_is_a_one_slice_volume(tmp_path, capsys):
    tokens = tmp_path / "slice.npz"
    run_ok(["tokenize3d", "--scan", CT_SLICE, "--out", str(tokens), "--model", "btb3d-tiny"], capsys)
    with np.load(tokens) as data:
        assert data["ids"].shape == (1, 14, 14)  # 112x112 at 0.75 mm
    run_ok(["decode3d", "--tokens", str(tokens), "--out", str(tmp_path / "slice.nii")], capsys)
    assert read_volume(tmp_path / "slice.nii").data.shape == (1, 112, 112)


def test_convert3d_then_tokenize_with_the_released_weights(tmp_path, capsys):
    out = tmp_path / "btb3d-w32"
    run_ok(["convert3d", "--checkpoint", str(FIXTURE / "checkpoint.ckpt"), "--out", str(out)], capsys)
    converted = BTB3D.from_pretrained(out)
    assert converted.config.token_bits == 6
    volume = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.random.uniform(-1000, 1000, (32, 32, 17)).astype(np.float32), np.eye(4)), volume)
    run_ok(
        [
            "tokenize3d",
            "--scan",
            str(volume),
            "--out",
            str(tmp_path / "t.npz"),
            "--model",
            str(out),
            "--spacing",
            "null",
        ],
        capsys,
    )
    with np.load(tmp_path / "t.npz") as data:
        assert data["ids"].shape == (3, 4, 4) and str(data["model"]) == str(out)
    run_bad(
        ["convert3d", "--checkpoint", str(tmp_path / "vol.nii.gz"), "--out", str(tmp_path / "x")], capsys, "cannot read"
    )
    assert not (tmp_path / "x").exists()


def test_bad_scans_exit_2_and_leave_nothing(tmp_path, capsys):
    for scan, message in bad_inputs(tmp_path):
        out = tmp_path / "tokens.npz"
        run_bad(["tokenize3d", "--scan", str(scan), "--out", str(out), "--model", "btb3d-tiny"], capsys, message)
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_bad_tokens_and_arguments(tmp_path, capsys):
    tokens = tmp_path / "tokens.npz"
    run_ok(["tokenize3d", "--scan", CT_SLICE, "--out", str(tokens), "--model", "btb3d-tiny"], capsys)
    recon = tmp_path / "recon.nii.gz"
    run_bad(["decode3d", "--tokens", CT_SLICE, "--out", str(recon)], capsys, "not a tokens file")
    run_bad(["decode3d", "--tokens", str(tmp_path / "none.npz"), "--out", str(recon)], capsys, "no such tokens file")
    run_bad(["decode3d", "--tokens", str(tokens), "--out", str(tmp_path / "recon.png")], capsys, ".nii")
    run_bad(["decode3d", "--tokens", str(tokens), "--out", str(recon), "--model", "btb3d-8x8x8-w32"], capsys, "bits")
    with np.load(tokens) as data:
        fields = dict(data)
    np.savez(tmp_path / "wrong_grid.npz", **(fields | {"ids": fields["ids"][:, :5]}))
    run_bad(["decode3d", "--tokens", str(tmp_path / "wrong_grid.npz"), "--out", str(recon)], capsys, "token grid")
    np.savez(tmp_path / "out_of_range.npz", **(fields | {"ids": fields["ids"] + 2**8}))
    run_bad(["decode3d", "--tokens", str(tmp_path / "out_of_range.npz"), "--out", str(recon)], capsys, "token ids")
    np.savez(tmp_path / "partial.npz", ids=fields["ids"])
    run_bad(["decode3d", "--tokens", str(tmp_path / "partial.npz"), "--out", str(recon)], capsys, "not a tokens file")
    assert not recon.exists()
    run_bad(
        ["tokenize3d", "--scan", CT_SLICE, "--out", str(tmp_path / "t.txt"), "--model", "btb3d-tiny"], capsys, ".npz"
    )
    run_bad(
        ["tokenize3d", "--scan", CT_SLICE, "--out", str(tmp_path / "no_dir" / "t.npz"), "--model", "btb3d-tiny"],
        capsys,
        "does not exist",
    )
    run_bad(
        ["tokenize3d", "--scan", CT_SLICE, "--out", str(tokens), "--model", str(tmp_path / "nope")],
        capsys,
        "neither a checkpoint directory nor a preset",
    )


def test_import_btb3d_imports_neither_timm_nor_lightning():
    import subprocess
    import sys

    code = "import sys, longseq.vision.btb3d; print('timm' in sys.modules, 'lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_demo_step_round_trips_a_real_ct_slice_and_beats_its_mean(tmp_path, capsys):
    from examples import demo

    demo.main(["--only", "btb3d", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "tokens of 10 bits" in out and "demo finished" in out
    assert read_volume(tmp_path / "btb3d" / "recon.nii.gz").data.shape == (1, 128, 128)
    tokenizer, mean = map(float, re.search(r"PSNR (\S+) dB .* mean everywhere: (\S+) dB", out).groups())
    assert tokenizer > mean + 3
