"""The BTB3D commands of the `vision` console script: tokenize3d, decode3d, convert3d, train3d.

Plain typed functions (jsonargparse builds the CLI from them); the heavy imports happen inside. Every input is
checked before work starts: bad input raises `core.io.InputError` / `core.checkpoint.CheckpointError` (one line,
exit 2), an output never overwrites an input, files are written under a temporary name and renamed when
complete, and an output directory is created only once the inputs pass (and removed if the command fails).
``--model`` takes anything `longseq.from_pretrained` opens: a preset, our checkpoint directory or a released file.
"""

from __future__ import annotations

from pathlib import Path

from longseq.core.train import OptimizerConfig, TrainerConfig
from longseq.vision.btb3d.train_config import BTB3DTaskConfig, VolumeDataConfig


def tokenize3d(
    scan: Path,
    output: Path,
    model: str = "btb3d-8x8x8",
    spacing: tuple[float, float, float] | None = (1.5, 0.75, 0.75),
    hu_window: tuple[float, float] = (-1000.0, 1000.0),
    tiled: bool = True,
    device: str = "cpu",
) -> None:
    """Encode a CT volume to BTB3D tokens (.npz).

    Args:
        scan: a NIfTI file (.nii, .nii.gz), a DICOM file, or a directory holding one DICOM series.
        output: the tokens file to write (.npz): ids (t, h, w) plus the geometry decode3d needs.
        model: a preset (random weights), a checkpoint directory (see convert3d) or a released BTB3D file.
        spacing: resample to this voxel spacing in mm along (slices, rows, columns) first; null keeps the grid.
        hu_window: clip to this Hounsfield window [low, high] and scale it to [-1, 1].
        tiled: encode in overlapping windows (flat memory in the number of slices; as released).
        device: torch device to run on (cpu, cuda, cuda:1, mps).
    """
    import torch

    from longseq.core.io import resolve_device
    from longseq.vision.btb3d.model import BTB3D
    from longseq.vision.btb3d.tokens_file import TokensFile
    from longseq.vision.btb3d.volumes import check_spacing, check_window, pad_to_grid, preprocess_ct, read_volume

    _check_output_file(output, (".npz",), scan, model)
    check_spacing(spacing)
    check_window(hu_window)
    device = resolve_device(device)
    volume = preprocess_ct(read_volume(scan), spacing=spacing, window=hu_window)
    tokenizer = BTB3D.from_pretrained(model).to(device)
    cd, ch, _ = tokenizer.config.compression
    x = torch.from_numpy(pad_to_grid(volume.data, cd, ch))[None, None].to(device)
    with torch.no_grad():
        ids = tokenizer.tokenize(x, tiled=tiled, progress=True).ids[0].cpu().numpy()
    TokensFile(
        ids=ids,
        token_bits=tokenizer.config.token_bits,
        shape=volume.data.shape,
        spacing=volume.spacing,
        affine=volume.affine,
        hu_window=hu_window,
        model=str(model),
    ).write(output)
    d, h, w = volume.data.shape
    print(f"{scan}: {d}x{h}x{w} voxels -> {'x'.join(map(str, ids.shape))} tokens of {tokenizer.config.token_bits} bits")


def decode3d(tokens: Path, output: Path, model: str | None = None, device: str = "cpu") -> None:
    """Decode BTB3D tokens (.npz from tokenize3d) back to a volume in Hounsfield units (.nii or .nii.gz).

    Args:
        tokens: the tokens file.
        output: the NIfTI file to write, on the preprocessed grid (tokenize3d's spacing) with the scan's orientation.
        model: a checkpoint directory, released file or preset; default: the one recorded in the tokens file.
        device: torch device to run on (cpu, cuda, cuda:1, mps).
    """
    import torch

    from longseq.core.io import InputError, resolve_device
    from longseq.vision.btb3d.model import BTB3D
    from longseq.vision.btb3d.tokens_file import read_tokens
    from longseq.vision.btb3d.volumes import Volume, unit_to_hu, write_nifti

    data = read_tokens(tokens)
    model = model or data.model
    _check_output_file(output, (".nii", ".nii.gz"), tokens, model)
    device = resolve_device(device)
    tokenizer = BTB3D.from_pretrained(model).to(device)
    config = tokenizer.config
    if data.token_bits != config.token_bits:
        raise InputError(f"{tokens}: tokens have {data.token_bits} bits but the model uses {config.token_bits}")
    d, h, w = data.shape
    cd, ch, cw = config.compression
    grid = config.token_grid(d + (-(d - 1)) % cd, h + (-h) % ch, w + (-w) % cw)
    if data.ids.shape != grid:
        raise InputError(f"{tokens}: a {d}x{h}x{w} volume has a {grid} token grid, the file holds {data.ids.shape}")
    with torch.no_grad():
        recon = tokenizer.decode_ids(torch.from_numpy(data.ids)[None].to(device))[0, 0, :d, :h, :w].cpu().numpy()
    write_nifti(Volume(data=unit_to_hu(recon, data.hu_window), spacing=data.spacing, affine=data.affine), output)
    print(f"{tokens}: {'x'.join(map(str, grid))} tokens -> {d}x{h}x{w} voxels in {output}")


def convert3d(checkpoint: Path, output: Path) -> None:
    """Convert a released BTB3D file (the tokenizer's state dict, or a training checkpoint) to our format.

    Args:
        checkpoint: the local .ckpt / .pt / .safetensors file (Hugging Face Forithmuscom/BTB3D); the architecture
            is read off its weights.
        output: the checkpoint directory to create (config.json + model.safetensors).
    """
    from longseq.core.io import check_not_overwriting, new_directory
    from longseq.vision.btb3d.model import BTB3D

    check_not_overwriting(output, checkpoint)
    model = BTB3D.from_pretrained(checkpoint)
    with new_directory(output):
        model.save_pretrained(output)
    print(f"{checkpoint} -> {output} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters)")


def train3d(
    output: Path,
    data: VolumeDataConfig,
    model: str = "btb3d-tiny",
    trainer: TrainerConfig = TrainerConfig(max_steps=1000, gradient_clip_val=0.5, run_name="btb3d"),  # noqa: B008
    optimizer: OptimizerConfig = OptimizerConfig(  # noqa: B008  (dataclass defaults: jsonargparse's flag groups)
        lr=1e-4, betas=(0.0, 0.99), weight_decay=0.0, warmup_steps=500, min_lr_ratio=0.0
    ),
    task: BTB3DTaskConfig = BTB3DTaskConfig(),  # noqa: B008
) -> None:
    """Train (or continue training) a BTB3D tokenizer at one curriculum stage, then save it to ``output``.

    Args:
        output: the checkpoint directory to create for the trained tokenizer (our format).
        data: the training scans and the excerpts cut from them (``--data.scans '[a.nii.gz, b.nii.gz]'``).
        model: the starting point: a preset, a checkpoint directory or a released file (stage 3 needs a trained
            encoder).
        trainer: steps (one per batch: generator and discriminator), hardware, checkpoints, logging, resume
            (``--trainer.resume last``), seed; gradient_clip_val clips each network separately.
        optimizer: AdamW and its schedule (the released config: Adam with betas (0, 0.99), no weight decay, a
            cosine to zero); the discriminators use lr * task.disc_lr_scale.
        task: the curriculum stage and the losses (``--task.stage 2``, ``--task.use_gan false``, ...).
    """
    import dataclasses

    import torch

    from longseq.core.io import InputError, check_not_overwriting, new_directory
    from longseq.core.train import build_trainer, fit
    from longseq.vision.btb3d.dataset import ExcerptBatches, load_training_volume
    from longseq.vision.btb3d.model import BTB3D
    from longseq.vision.btb3d.task import BTB3DTask, ExcerptDataModule
    from longseq.vision.btb3d.volumes import check_size

    # The task steps its optimizer itself: Lightning's clipping, accumulation and fp16 scaling do not apply.
    if trainer.accumulate_grad_batches != 1:
        raise InputError("train3d steps its optimizer itself: --trainer.accumulate_grad_batches must be 1")
    if trainer.precision == "16-mixed":
        raise InputError("train3d clips gradients itself, which fp16 loss scaling breaks: use bf16-mixed or 32-true")
    check_not_overwriting(output, *data.scans, model)
    trainer.check_outside(output)
    depth, slice_every = data.stage_depth(task.stage), data.stage_slice_every(task.stage)
    check_size((data.batch_size, depth, data.crop_size, data.crop_size), "a training batch")
    if task.use_gan and depth < task.disc_frames:
        raise InputError(f"3D excerpts of {depth} slices are shorter than the discriminator's {task.disc_frames}")
    volumes = [load_training_volume(scan, intensity=data.intensity, spacing=data.spacing) for scan in data.scans]

    # Everything that can refuse the inputs runs before Lightning's trainer prints its first lines, so the
    # random initialisation (a preset's, the discriminators') is seeded here; build_trainer seeds again after.
    torch.manual_seed(trainer.seed)
    tokenizer = BTB3D.from_pretrained(model)
    try:
        tokenizer.config.check_shape(depth, data.crop_size, data.crop_size)
    except ValueError as err:
        raise InputError(f"training excerpts of {depth} slices, {data.crop_size} pixels: {err}") from None
    module = BTB3DTask(
        tokenizer, task, optimizer=optimizer, crop_size=data.crop_size, gradient_clip_val=trainer.gradient_clip_val
    )
    batches = ExcerptBatches(
        volumes,
        depth=depth,
        size=data.crop_size,
        batch_size=data.batch_size,
        length=data.batches_per_epoch,
        slice_every=slice_every,
        seed=trainer.seed,
    )
    lightning_trainer = build_trainer(dataclasses.replace(trainer, gradient_clip_val=None))
    with new_directory(output):
        fit(lightning_trainer, module, ExcerptDataModule(batches), resume=trainer.resume)
        tokenizer.save_pretrained(output)
    print(f"trained {lightning_trainer.global_step} steps (stage {task.stage}) -> {output}")


def _check_output_file(output: Path, suffixes: tuple[str, ...], *inputs: str | Path | None) -> None:
    """A new output file: the right suffix, in an existing directory, not an input, and not there yet (a scan
    replaced by its reconstruction would be lost)."""
    from longseq.core.io import InputError, check_not_overwriting

    output = Path(output)
    if not output.name.lower().endswith(suffixes):
        raise InputError(f"{output}: the output must end in {' or '.join(suffixes)}")
    if not output.parent.is_dir():
        raise InputError(f"cannot write {output}: directory {output.parent} does not exist")
    check_not_overwriting(output, *inputs)
    if output.exists():
        raise InputError(f"{output} already exists; remove it or choose another output")
