"""Demo step for BTB3D: a real CT slice it never saw (pydicom's bundled CT_small.dcm) through `vision tokenize3d`
and `vision decode3d`, with the bundled tokenizer that `benchmarks/btb3d_quality.py` trained on the CPU, and the
reconstruction's PSNR next to two baselines on the same grid.

The tokenizer is small (0.8 M parameters, 1,000 CPU steps on seven scans): it beats the slice's mean intensity
everywhere, not yet down- and up-sampling that keeps 3.2x the bits (benchmarks/RESULTS.md, section vision, has
the other held-out scans; on the MRI volume it does not beat the mean, so the demo uses the CT slice).

    python -m examples.demo --only btb3d
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT = Path(__file__).parent / "btb3d_tiny"
HU_WINDOW = (-1000.0, 1000.0)  # the tokenizer's CT window (tokenize3d's default)


def run(out_dir: Path) -> None:
    """Writes tokens.npz and recon.nii.gz into ``out_dir``."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from pydicom.data import get_testdata_file

    from longseq.vision.btb3d.volumes import read_volume
    from longseq.vision.cli import main

    scan = get_testdata_file("CT_small.dcm")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens, recon = out_dir / "tokens.npz", out_dir / "recon.nii.gz"
    for previous in (tokens, recon):  # the commands never overwrite a file: clear the last run's outputs
        previous.unlink(missing_ok=True)
    if main(["tokenize3d", "--scan", scan, "--output", str(tokens), "--model", str(CHECKPOINT), "--spacing", "null"]):
        raise SystemExit("tokenize3d failed")
    if main(["decode3d", "--tokens", str(tokens), "--output", str(recon)]) != 0:
        raise SystemExit("decode3d failed")
    low, high = HU_WINDOW
    original = np.clip(read_volume(scan).data, low, high)
    decoded = np.clip(read_volume(recon).data, low, high)
    with np.load(tokens) as data:
        grid, bits = data["ids"].shape, int(data["token_bits"])

    def psnr(x: np.ndarray) -> float:
        return float(10 * np.log10((high - low) ** 2 / np.mean((x - original) ** 2)))

    # The same grid of positions, one 32-bit float each: area down, bilinear up (per slice).
    slices = torch.from_numpy(original).float()[:, None]
    pooled = F.interpolate(F.adaptive_avg_pool2d(slices, grid[-2:]), size=original.shape[-2:], mode="bilinear")
    print(f"BTB3D on a CT slice it never saw: {original.shape} voxels -> {grid} tokens of {bits} bits -> "
          f"PSNR {psnr(decoded):.1f} dB (HU window {low:g} to {high:g}); the slice's mean everywhere: "
          f"{psnr(np.full_like(original, original.mean())):.1f} dB; area down / bilinear up on the same grid with "
          f"32-bit floats (3.2x the bits): {psnr(pooled[:, 0].numpy()):.1f} dB; outputs in {out_dir}")  # fmt: skip


if __name__ == "__main__":
    run(Path("out/demo/btb3d"))
