"""Demo step for BTB3D: a real MRI volume (nibabel's bundled anatomical.nii) through `vision tokenize3d` and
`vision decode3d`, with the bundled tiny tokenizer checkpoint when present (else random weights).

    python -m examples.demo_btb3d
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CHECKPOINT = Path(__file__).parent / "btb3d_tiny"


def run() -> None:
    import nibabel as nib
    import numpy as np

    from vision.cli import main
    from vision.data.volumes import read_volume

    scan = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "anatomical.nii")
    model = str(CHECKPOINT) if (CHECKPOINT / "config.json").is_file() else "btb3d-tiny"
    with tempfile.TemporaryDirectory() as tmp:
        tokens, recon = Path(tmp) / "tokens.npz", Path(tmp) / "recon.nii.gz"
        # An MRI has no Hounsfield units: use its own intensity range as the window.
        original = read_volume(scan)
        low, high = np.percentile(original.data, [0.5, 99.5])
        window = f"[{low:.1f}, {high:.1f}]"
        argv = ["tokenize3d", "--scan", scan, "--out", str(tokens), "--model", model, "--spacing", "null"]
        if main([*argv, "--hu_window", window]) != 0:
            raise SystemExit("tokenize3d failed")
        if main(["decode3d", "--tokens", str(tokens), "--out", str(recon)]) != 0:
            raise SystemExit("decode3d failed")
        decoded = read_volume(recon).data
        clipped = np.clip(original.data, low, high)
        psnr = 10 * np.log10((high - low) ** 2 / np.mean((decoded - clipped) ** 2))
        with np.load(tokens) as data:
            grid, bits = data["ids"].shape, int(data["token_bits"])
        print(f"BTB3D ({model}): {original.data.shape} voxels -> {grid} tokens of {bits} bits -> PSNR {psnr:.1f} dB")


if __name__ == "__main__":
    run()
