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
    output: Path,
    scan: Path | None = None,
    scans: Path | None = None,
    model: str = "btb3d-8x8x8",
    metadata: Path | None = None,
    spacing: tuple[float, float, float] | None = (1.5, 0.75, 0.75),
    hu_window: tuple[float, float] = (-1000.0, 1000.0),
    tiled: bool = True,
    device: str = "cpu",
    devices: int = 1,
    num_nodes: int = 1,
) -> None:
    """Encode CT volumes to BTB3D tokens: one scan to one .npz, or a whole dataset to one .npz per volume.

    Args:
        output: --scan: the tokens file to write (.npz); --scans: the directory to fill with <volume id>.npz (created
            if needed; volumes whose file is already there are skipped, so an interrupted run resumes).
        scan: one volume: a NIfTI file (.nii, .nii.gz), a DICOM file, or a directory holding one DICOM series.
        scans: a dataset: a directory (every NIfTI file under it, named by its file name) or a .csv with a path
            column (and optionally id). A volume that fails is named at the end (exit 2); the others are written.
        model: a preset (random weights), a checkpoint directory (see convert3d) or a released BTB3D file.
        metadata: CT-RATE's metadata CSV (VolumeName, RescaleSlope, RescaleIntercept, XYSpacing, ZSpacing): values
            rescaled to HU and the spacing taken from it, as the official preprocessing does.
        spacing: resample to this voxel spacing in mm along (slices, rows, columns) first; null keeps the grid.
        hu_window: clip to this Hounsfield window [low, high] and scale it to [-1, 1].
        tiled: encode in overlapping windows (flat memory in the number of slices; as released).
        device: torch device to run on (cpu, cuda, cuda:1, mps); with --scans, the kind of device (cpu or cuda).
        devices: --scans: processes per node (Lightning's predict loop, DDP when more than one in all).
        num_nodes: --scans: machines.
    """
    from longseq.core.io import InputError
    from longseq.vision.btb3d.volumes import check_spacing, check_window

    if (scan is None) == (scans is None):
        raise InputError("give one of --scan (one volume) and --scans (a directory or .csv of volumes)")
    check_spacing(spacing)
    check_window(hu_window)
    if devices < 1 or num_nodes < 1:
        raise InputError(f"--devices and --num_nodes must be >= 1, got {devices}, {num_nodes}")
    if scans is not None:
        _tokenize_dataset(scans, output, model, metadata, spacing, hu_window, tiled, device, devices, num_nodes)
        return
    if devices * num_nodes > 1 or metadata is not None:
        raise InputError("--devices, --num_nodes and --metadata apply to --scans (a dataset)")
    _tokenize_one(scan, output, model, spacing, hu_window, tiled, device)


def _tokenize_one(scan, output, model, spacing, hu_window, tiled, device) -> None:
    import torch

    from longseq.core.io import resolve_device
    from longseq.vision.btb3d.lfq import indices_to_codes
    from longseq.vision.btb3d.model import BTB3D
    from longseq.vision.btb3d.tokens_file import TokensFile
    from longseq.vision.btb3d.volumes import pad_to_grid, preprocess_ct, read_volume

    _check_output_file(output, (".npz",), scan, model)
    device = resolve_device(device)
    volume = preprocess_ct(read_volume(scan), spacing=spacing, window=hu_window)
    tokenizer = BTB3D.from_pretrained(model).to(device)
    cd, ch, _ = tokenizer.config.compression
    x = torch.from_numpy(pad_to_grid(volume.data, cd, ch))[None, None].to(device)
    with torch.no_grad():
        ids = tokenizer.tokenize(x, tiled=tiled, progress=True).ids
    bits = tokenizer.config.token_bits
    TokensFile(
        ids=ids[0].cpu().numpy(),
        token_bits=bits,
        shape=volume.data.shape,
        spacing=volume.spacing,
        affine=volume.affine,
        hu_window=hu_window,
        model=str(model),
        embeddings=indices_to_codes(ids, bits)[0].cpu().numpy(),
    ).write(output)
    d, h, w = volume.data.shape
    grid = "x".join(map(str, ids.shape[1:]))
    print(f"{scan}: {d}x{h}x{w} voxels -> {grid} tokens of {bits} bits")


def _tokenize_dataset(scans, output, model, metadata, spacing, hu_window, tiled, device, devices, num_nodes) -> None:
    import sys

    import lightning as L
    from torch.utils.data import DataLoader

    from longseq.core.io import InputError, check_not_overwriting, resolve_device
    from longseq.core.train import build_predictor
    from longseq.vision.btb3d.model import BTB3D
    from longseq.vision.btb3d.scan_list import list_scans, read_metadata
    from longseq.vision.btb3d.tokenize_task import ScanVolumes, TokenizeVolumes, one_item

    output = Path(output)
    check_not_overwriting(output, scans, metadata, model)
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} is a file; with --scans it is the directory of tokens files")
    entries = list_scans(scans)
    table = read_metadata(metadata) if metadata is not None else None
    todo = [e for e in entries if not (output / f"{e.id}.npz").is_file()]
    kind = resolve_device(device).type
    L.seed_everything(0, verbose=False)  # a preset's random weights: the same in every process and every run
    tokenizer = BTB3D.from_pretrained(model)
    output.mkdir(parents=True, exist_ok=True)
    if not todo:
        print(f"{output}: all {len(entries)} volumes are already tokenized")
        return
    volumes = ScanVolumes(todo, compression=tokenizer.config.compression, spacing=spacing, hu_window=hu_window,
                          metadata=table)  # fmt: skip
    task = TokenizeVolumes(tokenizer, output, model_name=str(model), hu_window=hu_window, tiled=tiled)
    trainer = build_predictor(
        accelerator={"cpu": "cpu", "cuda": "gpu", "mps": "mps"}[kind],
        devices=devices,
        num_nodes=num_nodes,
        enable_progress_bar=sys.stderr.isatty(),
    )
    trainer.predict(task, DataLoader(volumes, batch_size=1, collate_fn=one_item), return_predictions=False)
    if not trainer.is_global_zero:
        return
    skipped = len(entries) - len(todo)
    print(f"{output}: {len(task.done)} volumes tokenized" + (f", {skipped} already there" if skipped else ""))
    if task.failed:
        named = "; ".join(f"{i} ({err})" for i, err in task.failed)
        raise InputError(f"{len(task.failed)} of {len(todo)} volumes failed, the others are written: {named}")


def decode3d(tokens: Path, output: Path, model: str | None = None, device: str = "cpu") -> None:
    """Decode BTB3D tokens (.npz from tokenize3d) back to a volume in Hounsfield units (.nii or .nii.gz).

    Args:
        tokens: the tokens file: token ids, or the continuous embeddings (their signs are the ids), or both.
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
