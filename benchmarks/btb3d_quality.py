"""BTB3D reconstruction quality on held-out real scans that ship offline, next to trilinear down/up-sampling.

    python -m benchmarks.btb3d_quality train --out runs/btb3d_quality   # CPU training (about 50 min on one core)
    python -m benchmarks.btb3d_quality eval --model runs/btb3d_quality/model

Training scans (real, from installed packages): nibabel's example4d.nii.gz (MRI, both time points),
scaled+tlrc (AFNI), the Philips phantom EPI (3 dynamics), and pydicom-data's 693_UNCR.dcm (a 512x512 CT slice).
Held out: nibabel's anatomical.nii (MRI volume), pydicom's CT_small.dcm (CT slice), pydicom-data's
eCT_Supplemental.dcm (two 512x512 CT frames, evaluated as slices) and emri_small.dcm (10-slice MR; its file has
no orientation, so it is read as plain frames). MRI is scaled by percentiles, CT by the HU window; all in [-1, 1].

The baseline downsamples by the tokenizer's compression (8x8x8 for volumes, 8x8 for slices) with trilinear
(antialiased area for slices) interpolation and upsamples back: one float per position, against one
`token_bits`-bit token per position.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def _nibabel_file(name: str) -> str:
    import nibabel as nib

    return os.path.join(os.path.dirname(nib.__file__), "tests", "data", name)


def _frames(path: str) -> list[np.ndarray]:
    """Each 3D frame of a (possibly 4D) image readable by nibabel, canonical orientation, as (d, h, w)."""
    import nibabel as nib

    image = nib.as_closest_canonical(nib.load(path)) if path.endswith((".nii", ".nii.gz")) else nib.load(path)
    data = np.asarray(image.get_fdata(), dtype=np.float32)
    data = data[..., None] if data.ndim == 3 else data
    return [np.ascontiguousarray(data[..., k].transpose(2, 1, 0)) for k in range(data.shape[3])]


def training_volumes() -> list[np.ndarray]:
    from pydicom.data import get_testdata_file

    from longseq.vision.btb3d.dataset import percentile_to_unit
    from longseq.vision.btb3d.volumes import preprocess_ct, read_volume

    mri = _frames(_nibabel_file("example4d.nii.gz")) + _frames(_nibabel_file("scaled+tlrc.HEAD"))
    mri += _frames(_nibabel_file("phantom_EPI_asc_CLEAR_2_1.PAR"))
    volumes = [percentile_to_unit(v) for v in mri]
    volumes.append(preprocess_ct(read_volume(get_testdata_file("693_UNCR.dcm"))).data)
    return volumes


def held_out() -> dict[str, np.ndarray]:
    import pydicom
    from pydicom.data import get_testdata_file

    from longseq.vision.btb3d.dataset import percentile_to_unit
    from longseq.vision.btb3d.volumes import preprocess_ct, read_volume

    items = {"anatomical.nii (MRI, 25x41x33)": percentile_to_unit(read_volume(_nibabel_file("anatomical.nii")).data)}
    emri = pydicom.dcmread(get_testdata_file("emri_small.dcm")).pixel_array.astype(np.float32)
    items[f"emri_small.dcm (MR, {'x'.join(map(str, emri.shape))})"] = percentile_to_unit(emri)
    ct_small = preprocess_ct(read_volume(get_testdata_file("CT_small.dcm")), spacing=None).data
    items["CT_small.dcm (CT slice, 128x128)"] = ct_small
    ect = preprocess_ct(read_volume(get_testdata_file("eCT_Supplemental.dcm")), spacing=None).data
    for k in range(ect.shape[0]):
        items[f"eCT_Supplemental.dcm frame {k} (CT slice, 512x512)"] = ect[k : k + 1]
    return items


def train(args) -> None:
    import nibabel as nib

    from longseq.vision.btb3d.model import BTB3D, BTB3DConfig
    from longseq.vision.cli import main

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = BTB3DConfig(filters=16, channel_multipliers=(1, 2, 2), num_res_blocks=1, norm_groups=8, token_bits=10)
    start = out / "init"
    if not (start / "config.json").is_file():
        BTB3D(config).save_pretrained(start)
    with tempfile.TemporaryDirectory() as tmp:
        scans = []
        for k, volume in enumerate(training_volumes()):
            # Already in [-1, 1]: stored as HU / 1000, which train3d's CT window maps back exactly.
            path = Path(tmp) / f"train{k}.nii.gz"
            nib.save(nib.Nifti1Image((volume * 1000).transpose(2, 1, 0), np.eye(4)), path)
            scans.append(str(path))
        argv = [
            "train3d",
            "--output",
            str(out / "model"),
            "--model",
            str(start),
            "--data.scans",
            json.dumps(scans),
            "--data.batch_size",
            "4",
            "--data.crop_size",
            "32",
            "--data.spacing",
            "null",
            "--trainer.max_steps",
            str(args.steps),
            "--trainer.checkpoint_dir",
            str(out / "ckpt"),
            "--trainer.checkpoint_every_n_steps",
            "100",
            "--trainer.resume",
            "last",
            "--trainer.log_dir",
            str(out / "logs"),
            "--optimizer.lr",
            str(args.lr),
            "--optimizer.warmup_steps",
            "100",
            "--task.entropy_decay_steps",
            "500",
        ]
        if main(argv) != 0:
            raise SystemExit("train3d failed")


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10 * np.log10(data_range**2 / max(mse, 1e-12))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    if a.shape[0] == 1:
        return float(structural_similarity(a[0], b[0], data_range=2.0))
    win = min(7, *(n if n % 2 else n - 1 for n in a.shape))
    return float(structural_similarity(a, b, data_range=2.0, win_size=win))


def evaluate(args) -> dict:
    import torch
    import torch.nn.functional as F

    from longseq.vision.btb3d.model import BTB3D
    from longseq.vision.btb3d.volumes import pad_to_grid

    model = BTB3D.from_pretrained(args.model).eval()
    cd, ch, _ = model.config.compression
    rows = []
    for name, data in held_out().items():
        d, h, w = data.shape
        padded = pad_to_grid(np.clip(data, -1, 1), cd, ch)
        x = torch.from_numpy(padded)[None, None]
        with torch.no_grad():
            recon = model.decode_ids(model.tokenize(x).ids)[0, 0, :d, :h, :w].clamp(-1, 1).numpy()
            grid = model.config.token_grid(*padded.shape)
            if d == 1:
                small = F.interpolate(x[:, :, 0], size=grid[1:], mode="area")
                base = F.interpolate(small, size=padded.shape[1:], mode="bilinear", align_corners=False)[:, :, None]
            else:
                small = F.interpolate(x, size=grid, mode="trilinear", align_corners=False)
                base = F.interpolate(small, size=padded.shape, mode="trilinear", align_corners=False)
        base = base[0, 0, :d, :h, :w].numpy()
        rows.append(
            {
                "scan": name,
                "tokens": "x".join(map(str, grid)),
                "psnr_btb3d": psnr(data, recon),
                "ssim_btb3d": ssim(data, recon),
                "psnr_trilinear": psnr(data, base),
                "ssim_trilinear": ssim(data, base),
            }
        )
    bits = model.config.token_bits
    print(
        f"| held-out scan | tokens | BTB3D PSNR / SSIM ({bits} bits per position) | "
        "trilinear PSNR / SSIM (one float per position) |"
    )
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['scan']} | {r['tokens']} | {r['psnr_btb3d']:.2f} dB / {r['ssim_btb3d']:.3f} | "
            f"{r['psnr_trilinear']:.2f} dB / {r['ssim_trilinear']:.3f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("--out", default="runs/btb3d_quality")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lr", type=float, default=2e-4)
    p = sub.add_parser("eval")
    p.add_argument("--model", required=True)
    p.add_argument("--json", default=None)
    args = parser.parse_args()
    train(args) if args.command == "train" else evaluate(args)


if __name__ == "__main__":
    main()
