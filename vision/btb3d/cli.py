"""The BTB3D commands of the `vision` console script: tokenize3d, decode3d, convert3d, train3d.

Plain typed functions (jsonargparse builds the CLI from them); heavy imports happen inside, so `vision --help`
stays instant. Bad input raises `core.io.InputError` / `core.checkpoint.CheckpointError` (one line, exit 2);
outputs are written to a temporary name and renamed when complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from longseq.vision.btb3d.train_config import BTB3DTrainConfig

TOKENS_FORMAT = "btb3d-tokens-v1"


def tokenize3d(
    scan: Path,
    out: Path,
    model: str = "btb3d-8x8x8",
    spacing: tuple[float, float, float] | None = (1.5, 0.75, 0.75),
    hu_window: tuple[float, float] = (-1000.0, 1000.0),
    tiled: bool = True,
    device: str = "cpu",
) -> None:
    """Encode a CT volume to BTB3D tokens (.npz).

    Args:
        scan: a NIfTI file (.nii, .nii.gz), a DICOM file, or a directory holding one DICOM series.
        out: the tokens file to write (.npz): ids (t, h, w) plus the geometry decode3d needs.
        model: a checkpoint directory in our format (see convert3d) or a preset name (random weights).
        spacing: resample to this voxel spacing in mm along (slices, rows, columns) first; null keeps the grid.
        hu_window: clip to this Hounsfield window and scale it to [-1, 1].
        tiled: encode in overlapping windows (flat memory in the number of slices; as released).
        device: torch device to run on.
    """
    import numpy as np
    import torch

    from longseq.core.io import InputError, atomic_output
    from longseq.vision.btb3d.model import BTB3D
    from longseq.vision.btb3d.volumes import pad_to_grid, preprocess_ct, read_volume

    if Path(out).suffix != ".npz":
        raise InputError(f"{out}: the tokens file must end in .npz")
    tokenizer = BTB3D.from_pretrained(model).eval().to(device)
    volume = preprocess_ct(read_volume(scan), spacing=spacing, window=hu_window)
    cd, ch, _ = tokenizer.config.compression
    padded = pad_to_grid(volume.data, cd, ch)
    x = torch.from_numpy(padded)[None, None].to(device)
    with torch.no_grad():
        ids = tokenizer.tokenize(x, tiled=tiled, progress=True).ids[0].cpu().numpy()
    with atomic_output(out) as tmp:
        np.savez_compressed(
            tmp,
            format=np.array(TOKENS_FORMAT),
            ids=ids.astype(np.int64),
            token_bits=np.array(tokenizer.config.token_bits),
            shape=np.array(volume.data.shape),
            spacing=np.array(volume.spacing),
            affine=volume.affine,
            hu_window=np.array(hu_window),
            model=np.array(str(model)),
        )
    d, h, w = volume.data.shape
    print(f"{scan}: {d}x{h}x{w} voxels -> {'x'.join(map(str, ids.shape))} tokens of {tokenizer.config.token_bits} bits")


def _read_tokens(path: Path) -> dict:
    import zipfile

    import numpy as np

    from longseq.core.io import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such tokens file: {path}")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a tokens file (expected the .npz archive written by tokenize3d)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            tokens = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: cannot read as a tokens .npz file: {err}") from None
    needed = {"format", "ids", "token_bits", "shape", "spacing", "affine", "hu_window", "model"}
    if str(tokens.get("format", "")) != TOKENS_FORMAT or not needed <= tokens.keys():
        missing = ", ".join(sorted(needed - tokens.keys())) or "format"
        raise InputError(f"{path}: not a tokens file written by tokenize3d (missing or wrong: {missing})")
    if tokens["ids"].ndim != 3 or tokens["affine"].shape != (4, 4) or tokens["shape"].shape != (3,):
        raise InputError(f"{path}: malformed tokens file (ids must be (t, h, w), affine 4x4, shape 3 numbers)")
    return tokens


def decode3d(tokens: Path, out: Path, model: str | None = None, device: str = "cpu") -> None:
    """Decode BTB3D tokens (.npz from tokenize3d) back to a volume in Hounsfield units (.nii or .nii.gz).

    Args:
        tokens: the tokens file.
        out: the NIfTI file to write, on the preprocessed grid (tokenize3d's spacing) with the scan's orientation.
        model: checkpoint directory or preset; default: the one recorded in the tokens file.
        device: torch device to run on.
    """
    import torch

    from longseq.core.io import InputError
    from longseq.vision.btb3d.model import BTB3D
    from longseq.vision.btb3d.volumes import Volume, unit_to_hu, write_nifti

    if not str(out).lower().endswith((".nii", ".nii.gz")):
        raise InputError(f"{out}: output must end in .nii or .nii.gz")
    data = _read_tokens(tokens)
    tokenizer = BTB3D.from_pretrained(model or str(data["model"])).eval().to(device)
    config = tokenizer.config
    if int(data["token_bits"]) != config.token_bits:
        raise InputError(f"{tokens}: tokens have {int(data['token_bits'])} bits but the model uses {config.token_bits}")
    d, h, w = (int(n) for n in data["shape"])
    grid = config.token_grid(*_padded(d, h, w, config.compression))
    if tuple(data["ids"].shape) != grid:
        raise InputError(f"{tokens}: a {d}x{h}x{w} volume has a {grid} token grid, the file holds {data['ids'].shape}")
    ids = torch.from_numpy(data["ids"]).long()[None].to(device)
    try:
        with torch.no_grad():
            recon = tokenizer.decode_ids(ids)[0, 0, :d, :h, :w].cpu().numpy()
    except ValueError as err:
        raise InputError(f"{tokens}: {err}") from None
    window = tuple(float(v) for v in data["hu_window"])
    spacing = tuple(float(v) for v in data["spacing"])
    write_nifti(Volume(data=unit_to_hu(recon, window), spacing=spacing, affine=data["affine"]), out)
    print(f"{tokens}: {'x'.join(map(str, grid))} tokens -> {d}x{h}x{w} voxels in {out}")


def _padded(d: int, h: int, w: int, compression: tuple[int, int, int]) -> tuple[int, int, int]:
    cd, ch, cw = compression
    return d + (-(d - 1)) % cd, h + (-h) % ch, w + (-w) % cw


def convert3d(checkpoint: Path, out: Path, layout: str = "auto") -> None:
    """Convert a released BTB3D checkpoint (the tokenizer state dict, or a training checkpoint) to our format.

    Args:
        checkpoint: the local .ckpt / .pt / .safetensors file (Hugging Face Forithmuscom/BTB3D).
        out: the checkpoint directory to write (config.json + model.safetensors).
        layout: auto, tokenizer (flat state dict) or training (tokenizer. prefix + discriminators).
    """
    from longseq.core.io import InputError
    from longseq.vision.btb3d.convert import load_released

    if layout not in ("auto", "tokenizer", "training"):
        raise InputError(f"layout must be auto, tokenizer or training, not {layout!r}")
    model, _ = load_released(checkpoint, layout=layout)
    model.save_pretrained(out)
    print(f"{checkpoint} -> {out} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters)")


def train3d(
    scans: list[Path],
    out: Path,
    model: str = "btb3d-tiny",
    train: BTB3DTrainConfig | None = None,
    steps: int = 1000,
    steps_per_epoch: int = 100,
    batch_size: int = 1,
    depth: int | None = None,
    slice_every: int | None = None,
    intensity: Literal["ct", "percentile"] = "ct",
    spacing: tuple[float, float, float] | None = (1.5, 0.75, 0.75),
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    log_dir: Path = Path("runs"),
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "cpu",
) -> None:
    """Train (or continue training) a BTB3D tokenizer at one curriculum stage, then save it to ``out``.

    Args:
        scans: training volumes (NIfTI, DICOM files or series directories).
        out: checkpoint directory to write the trained tokenizer to (our format).
        model: starting point: a checkpoint directory or a preset (stage 3 needs a trained encoder).
        train: losses and optimisation (``--train.stage``, ``--train.lr``, ``--train.crop_size``, ...).
        steps: training batches (each one generator and one discriminator step).
        steps_per_epoch: batches per epoch (the excerpts are drawn afresh every epoch).
        batch_size: excerpts per batch.
        depth: slices per 3D excerpt (default 9 in stage 1, 41 in stages 2 and 3).
        slice_every: every n-th batch is 2D single slices (default 2 in stage 1, none later; 0 for none).
        intensity: "ct" (Hounsfield window) or "percentile" (MRI and other unitless scans).
        spacing: resample the scans to this spacing (mm) first; null keeps their grids.
        checkpoint_dir: where Lightning checkpoints go (``last.ckpt``; needed for --resume).
        checkpoint_every: write a checkpoint every this many batches.
        resume: continue from ``checkpoint_dir/last.ckpt`` exactly where it stopped (fresh start if absent).
        log_dir: CSV logs.
        accelerator: Lightning accelerator.
    """
    from longseq.core.io import InputError
    from longseq.core.train import TrainerConfig, build_trainer, fit
    from longseq.vision.btb3d.dataset import ExcerptBatches, load_training_volume
    from longseq.vision.btb3d.model import BTB3D
    from longseq.vision.btb3d.task import BTB3DTask, ExcerptDataModule

    train = train or BTB3DTrainConfig()
    if min(steps, steps_per_epoch, batch_size, checkpoint_every) < 1:
        raise InputError("steps, steps_per_epoch, batch_size and checkpoint_every must be positive")
    if resume and checkpoint_dir is None:
        raise InputError("--resume needs --checkpoint_dir")
    depth = depth or (9 if train.stage == 1 else 41)
    slice_every = (2 if train.stage == 1 else 0) if slice_every is None else slice_every
    volumes = [load_training_volume(scan, intensity=intensity, spacing=spacing) for scan in scans]
    tokenizer = BTB3D.from_pretrained(model)
    try:
        tokenizer.config.check_shape(depth, train.crop_size, train.crop_size)
    except ValueError as err:
        raise InputError(f"training excerpts of {depth} slices, {train.crop_size} pixels: {err}") from None
    task = BTB3DTask(tokenizer, train, total_steps=steps)
    batches = ExcerptBatches(
        volumes,
        depth=depth,
        size=train.crop_size,
        batch_size=batch_size,
        length=steps_per_epoch,
        slice_every=slice_every,
        seed=train.seed,
    )
    # With manual optimisation Lightning counts every optimizer step: two per batch with the GAN.
    per_batch = 2 if train.use_gan else 1
    trainer = build_trainer(
        TrainerConfig(
            max_steps=steps * per_batch,
            accelerator=accelerator,
            devices=1,
            gradient_clip_val=None,
            checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
            checkpoint_every_n_steps=None if checkpoint_dir is None else checkpoint_every * per_batch,
            log_dir=str(log_dir),
            run_name="btb3d",
            seed=train.seed,
        )
    )
    fit(trainer, task, ExcerptDataModule(batches), resume="last" if resume else None)
    tokenizer.save_pretrained(out)
    print(f"trained {int(task.step)} steps (stage {train.stage}) -> {out}")
