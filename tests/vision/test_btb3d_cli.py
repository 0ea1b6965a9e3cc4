"""`vision tokenize3d / decode3d / convert3d` end to end on tiny models, bad inputs included."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

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
    argv = ["tokenize3d", "--scan", scan, "--output", str(tokens), "--model", str(model), "--spacing", "[4, 4, 4]"]
    run_ok(argv, capsys)
    with np.load(tokens) as data:
        # 25x41x33 at 2 mm -> 12x20x16 at 4 mm, padded to 17x24x16 -> 3x3x2 tokens
        assert data["ids"].shape == (3, 3, 2) and tuple(data["shape"]) == (12, 20, 16)
        assert data["ids"].max() < 2**8
    run_ok(["decode3d", "--tokens", str(tokens), "--output", str(recon)], capsys)
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
    run_ok(["tokenize3d", "--scan", CT_SLICE, "--output", str(tokens), "--model", "btb3d-tiny"], capsys)
    with np.load(tokens) as data:
        assert data["ids"].shape == (1, 14, 14)  # 112x112 at 0.75 mm
    run_ok(["decode3d", "--tokens", str(tokens), "--output", str(tmp_path / "slice.nii")], capsys)
    assert read_volume(tmp_path / "slice.nii").data.shape == (1, 112, 112)


def test_convert3d_then_tokenize_with_the_released_weights(tmp_path, capsys):
    out = tmp_path / "btb3d-w32"
    run_ok(["convert3d", "--checkpoint", str(FIXTURE / "checkpoint.ckpt"), "--output", str(out)], capsys)
    converted = BTB3D.from_pretrained(out)
    assert converted.config.token_bits == 6
    volume = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.random.uniform(-1000, 1000, (32, 32, 17)).astype(np.float32), np.eye(4)), volume)
    run_ok(
        [
            "tokenize3d",
            "--scan",
            str(volume),
            "--output",
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
        ["convert3d", "--checkpoint", str(tmp_path / "vol.nii.gz"), "--output", str(tmp_path / "x")],
        capsys,
        "cannot read",
    )
    assert not (tmp_path / "x").exists()


def test_bad_scans_exit_2_and_leave_nothing(tmp_path, capsys):
    for scan, message in bad_inputs(tmp_path):
        out = tmp_path / "tokens.npz"
        run_bad(["tokenize3d", "--scan", str(scan), "--output", str(out), "--model", "btb3d-tiny"], capsys, message)
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    """A tokens file of the CT slice, written by tokenize3d with btb3d-tiny, and its fields."""
    path = tmp_path_factory.mktemp("tokens") / "tokens.npz"
    assert main(["tokenize3d", "--scan", CT_SLICE, "--output", str(path), "--model", "btb3d-tiny"]) == 0
    with np.load(path) as data:
        return path, dict(data)


def _edited(fields: dict, **changes) -> dict:
    return {**fields, **{k: np.asarray(v) for k, v in changes.items()}}


TOKENS_CASES = {
    "float ids": (lambda f: _edited(f, ids=f["ids"].astype(np.float32)), "array of integers"),
    "ids out of range": (lambda f: _edited(f, ids=f["ids"] + 2**8), "token ids must lie in [0, 2**8)"),
    "negative ids": (lambda f: _edited(f, ids=f["ids"] - 2**8), "token ids must lie"),
    "wrong grid": (lambda f: _edited(f, ids=f["ids"][:, :5]), "token grid"),
    "NaN window": (lambda f: _edited(f, hu_window=[float("nan"), 1000.0]), "low < high"),
    "reversed window": (lambda f: _edited(f, hu_window=[1000.0, -1000.0]), "low < high"),
    "negative spacing": (lambda f: _edited(f, spacing=[-1.0, 1.0, 1.0]), "spacing must be three positive"),
    "huge shape": (lambda f: _edited(f, shape=[3000, 3000, 3000]), "voxels, more than"),
    "float token_bits": (lambda f: _edited(f, token_bits=8.5), "token_bits must be one integer"),
    "singular affine": (lambda f: _edited(f, affine=np.zeros((4, 4))), "orientation"),
    "fields missing": (lambda f: {"ids": f["ids"]}, "not a tokens file"),
}


@pytest.mark.parametrize("case", list(TOKENS_CASES))
def test_bad_tokens_files_exit_2_and_write_nothing(case, tokens_file, tmp_path, capsys):
    edit, message = TOKENS_CASES[case]
    bad, recon = tmp_path / "bad.npz", tmp_path / "recon.nii.gz"
    np.savez(bad, **edit(tokens_file[1]))
    run_bad(["decode3d", "--tokens", str(bad), "--output", str(recon)], capsys, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_tokens_files_that_are_not_archives(tokens_file, tmp_path, capsys):
    recon = tmp_path / "recon.nii.gz"
    run_bad(["decode3d", "--tokens", CT_SLICE, "--output", str(recon)], capsys, "not a tokens file")
    run_bad(["decode3d", "--tokens", str(tmp_path / "none.npz"), "--output", str(recon)], capsys, "no such tokens file")
    (tmp_path / "empty.npz").write_bytes(b"")
    run_bad(["decode3d", "--tokens", str(tmp_path / "empty.npz"), "--output", str(recon)], capsys, "not a tokens file")
    assert not recon.exists()


def _tokenize(tmp_path, **flags) -> list[str]:
    argv = {"--scan": CT_SLICE, "--output": str(tmp_path / "t.npz"), "--model": "btb3d-tiny"} | flags
    return ["tokenize3d", *(item for pair in argv.items() for item in pair)]


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"--spacing": "[-1.5, 0.75, 0.75]"}, "spacing must be three positive numbers"),
        ({"--spacing": "[0, 0.75, 0.75]"}, "spacing must be three positive numbers"),
        ({"--spacing": "[1e-5, 1e-5, 1e-5]"}, "voxels, more than"),
        ({"--hu_window": "[1000, -1000]"}, "low < high"),
        ({"--hu_window": "[0, 0]"}, "low < high"),
        ({"--hu_window": "[.nan, 1000]"}, "low < high"),
        ({"--device": "cuda:99"}, "--device cuda:99"),
        ({"--device": "tpu"}, "unknown device"),
        ({"--output": "t.txt"}, ".npz"),
        ({"--output": "no_dir/t.npz"}, "does not exist"),
        ({"--output": "."}, ".npz"),
        ({"--model": "nope"}, "unknown model"),
        ({"--model": "mamba-tiny"}, "not a BTB3D"),
    ],
)
def test_bad_tokenize3d_arguments_exit_2_and_write_nothing(flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_bad(_tokenize(tmp_path, **flags), capsys, message)
    assert not list(tmp_path.iterdir())


def test_outputs_never_overwrite_inputs(tokens_file, tmp_path, capsys):
    tokens = tmp_path / "tokens.npz"
    tokens.write_bytes(tokens_file[0].read_bytes())
    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 9), np.float32), np.eye(4)), scan)
    (tmp_path / "series").mkdir()
    series_file = tmp_path / "series" / "tokens.npz"
    series_file.write_bytes(b"x")
    model = tmp_path / "model.npz"
    model.write_bytes(b"x")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    run_bad(_tokenize(tmp_path, **{"--scan": str(series_file), "--output": str(series_file)}), capsys, "overwrite")
    run_bad(_tokenize(tmp_path, **{"--model": str(model), "--output": str(model)}), capsys, "overwrite")
    run_bad(["decode3d", "--tokens", str(tokens), "--output", str(scan)], capsys, "already exists")
    run_bad(["convert3d", "--checkpoint", str(model), "--output", str(model)], capsys, "overwrite")
    run_bad(["convert3d", "--checkpoint", str(FIXTURE / "checkpoint.ckpt"), "--output", str(scan)], capsys, "exists")
    assert {p: p.read_bytes() for p in before} == before


def test_device_cuda_on_a_machine_without_one(tokens_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run_bad(_tokenize(tmp_path, **{"--device": "cuda"}), capsys, "CUDA is not available")
    recon = str(tmp_path / "recon.nii")
    run_bad(["decode3d", "--tokens", str(tokens_file[0]), "--output", recon, "--device", "cuda"], capsys, "CUDA")
    assert not list(tmp_path.iterdir())


def test_decode3d_refuses_a_model_of_other_bits_or_a_device_it_lacks(tokens_file, tmp_path, capsys):
    recon = tmp_path / "recon.nii.gz"
    tokens = str(tokens_file[0])
    run_bad(["decode3d", "--tokens", tokens, "--output", str(recon), "--model", "btb3d-8x8x8-w32"], capsys, "bits")
    run_bad(["decode3d", "--tokens", tokens, "--output", str(recon), "--device", "cuda:99"], capsys, "cuda:99")
    run_bad(["decode3d", "--tokens", tokens, "--output", str(tmp_path)], capsys, ".nii")
    (tmp_path / "dir.nii").mkdir()
    run_bad(["decode3d", "--tokens", tokens, "--output", str(tmp_path / "dir.nii")], capsys, "already exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.nii"]


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
