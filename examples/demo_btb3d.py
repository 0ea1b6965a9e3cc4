"""Demo step for BTB3D: a real MRI volume (nibabel's bundled anatomical.nii) through `vision tokenize3d` and
`vision decode3d`, with the bundled tokenizer that `benchmarks/btb3d_quality.py` trained on the CPU.

    python -m examples.demo --only btb3d
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINT = Path(__file__).parent / "btb3d_tiny"


def run(out_dir: Path) -> None:
    """Writes tokens.npz and recon.nii.gz into ``out_dir``."""
    import nibabel as nib
    import numpy as np

    from longseq.vision.btb3d.volumes import read_volume
    from longseq.vision.cli import main

    scan = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "anatomical.nii")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = str(CHECKPOINT)
    tokens, recon = out_dir / "tokens.npz", out_dir / "recon.nii.gz"
    for previous in (tokens, recon):  # the commands never overwrite a file: clear the last run's outputs
        previous.unlink(missing_ok=True)
    # An MRI has no Hounsfield units: use its own intensity range as the window.
    original = read_volume(scan)
    low, high = np.percentile(original.data, [0.5, 99.5])
    window = f"[{low:.1f}, {high:.1f}]"
    argv = ["tokenize3d", "--scan", scan, "--output", str(tokens), "--model", model, "--spacing", "null"]
    if main([*argv, "--hu_window", window]) != 0:
        raise SystemExit("tokenize3d failed")
    if main(["decode3d", "--tokens", str(tokens), "--output", str(recon)]) != 0:
        raise SystemExit("decode3d failed")
    decoded = read_volume(recon).data
    clipped = np.clip(original.data, low, high)
    psnr = 10 * np.log10((high - low) ** 2 / np.mean((decoded - clipped) ** 2))
    with np.load(tokens) as data:
        grid, bits = data["ids"].shape, int(data["token_bits"])
    print(f"BTB3D: {original.data.shape} voxels -> {grid} tokens of {bits} bits -> PSNR {psnr:.1f} dB, in {out_dir}")


if __name__ == "__main__":
    run(Path("out/demo/btb3d"))
