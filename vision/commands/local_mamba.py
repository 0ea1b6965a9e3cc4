"""The LocalMamba commands of the `vision` console script: convert, extract-directions, make-image-folder,
train-classifier, eval-classifier.

Plain typed functions (jsonargparse builds the CLI from them). Every input is checked before work starts: bad input
raises `core.io.InputError` / `core.checkpoint.CheckpointError` (one line, exit 2); an output never overwrites an
input, output directories are created only once the inputs pass, and files are written under a temporary name.

``--model`` names an architecture: a preset (``longseq.list_models("local*")``) or a JSON config (what
``extract-directions`` writes, or a checkpoint's ``config.json``); ``train-classifier`` also starts from the weights of
a finished run (its output directory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from longseq.core.io import InputError
from longseq.core.train import OptimizerConfig, TrainerConfig
from longseq.vision.images import ImageDataConfig


def convert(checkpoint: Path, model: str, output: Path, num_classes: int = 0, img_size: int = 0) -> None:
    """Convert an official LocalMamba checkpoint (hunto/LocalMamba release .ckpt / .pth) into our format.

    Args:
        checkpoint: the official file.
        model: the architecture it was trained as (the file does not record the scan directions): a preset
            (localvim_tiny, localvim_tiny_middle_cls_token, localvmamba_small, ...) or a .json config.
        output: the checkpoint directory to write (config.json + model.safetensors); new or empty.
        num_classes: a new class count (a fresh head); 0: the architecture's.
        img_size: a new input size for LocalVim (position tables resized); 0: the architecture's.
    """
    import longseq
    from longseq.core.io import InputError, check_not_overwriting, new_directory

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(f"no such checkpoint file (.ckpt, .pth or .safetensors): {checkpoint}")
    check_not_overwriting(output, checkpoint, model)
    if num_classes < 0 or img_size < 0:
        raise InputError(
            f"--num_classes and --img_size must be >= 0 (0: the architecture's); got {num_classes}, {img_size}"
        )
    overrides = {"num_classes": num_classes, "img_size": img_size}
    net = longseq.from_pretrained(checkpoint, architecture=model, **{k: v for k, v in overrides.items() if v})
    with new_directory(output):
        net.save_pretrained(output)
    print(f"{checkpoint} -> {output} ({sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters)")


def extract_directions(checkpoint: Path, output: Path, topk: int = 4, model: str | None = None) -> None:
    """Pick each layer's top-k scan directions from a trained search supernet and write a model config.

    Args:
        checkpoint: the supernet: our checkpoint directory, or an official .ckpt / .pth file.
        output: the JSON config to write (``model_type`` + config fields with ``directions`` filled in); train it
            with ``vision train-classifier --model output.json``.
        topk: directions kept per layer (LocalMamba keeps 4).
        model: the architecture to put the directions into (a preset such as localvim_tiny, or a .json config);
            default: the supernet's own (needed for an official file, which records none).
    """
    import dataclasses
    import json

    import longseq
    from longseq.core.checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError
    from longseq.core.io import InputError, atomic_output, check_not_overwriting
    from longseq.core.registry import Source
    from longseq.vision.local_mamba.convert import named_architecture, unwrap
    from longseq.vision.local_mamba.local_vim import LocalVim, LocalVimConfig
    from longseq.vision.local_mamba.local_vmamba import LocalVMamba
    from longseq.vision.local_mamba.mixers import extract_directions as choose
    from longseq.vision.local_mamba.scans import ALL_DIRECTIONS

    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise InputError(f"no such checkpoint: {checkpoint}")
    inputs = [checkpoint / CONFIG_NAME, checkpoint / WEIGHTS_NAME] if checkpoint.is_dir() else [checkpoint]
    check_not_overwriting(output, *inputs, model)
    if Path(output).is_dir():
        raise InputError(f"--output {output} is a directory; name the JSON file to write")
    if not 1 <= topk <= len(ALL_DIRECTIONS):
        raise InputError(f"--topk must lie in 1..{len(ALL_DIRECTIONS)}; got {topk}")
    if checkpoint.is_dir():
        supernet = longseq.from_pretrained(checkpoint)
        if not isinstance(supernet, (LocalVim, LocalVMamba)):
            raise InputError(f"{checkpoint} holds a {type(supernet).__name__}, not a LocalMamba search supernet")
        state, base = supernet.state_dict(), supernet.config
    elif model is None:
        raise InputError(f"{checkpoint} is an official file without a config: pass --model (e.g. localvim_tiny)")
    else:
        state = unwrap(Source(checkpoint).contents, str(checkpoint))
    if model is not None:
        base = named_architecture(model)
    try:
        directions = choose(state, topk)
    except ValueError as err:
        raise InputError(f"{checkpoint}: {err}") from None
    model_type = "local_vim" if isinstance(base, LocalVimConfig) else "local_vmamba"
    searched = "local_vim" if any(k.endswith("mixer.multi_scan.weights") for k in state) else "local_vmamba"
    if model_type != searched:
        raise InputError(f"{checkpoint} is a {searched} supernet; {model} is a {model_type} architecture")
    try:
        config = dataclasses.replace(base, directions=directions)
    except ValueError as err:
        raise CheckpointError(f"{model or checkpoint}: {err}") from None
    with atomic_output(output) as tmp:
        tmp.write_text(json.dumps({"model_type": model_type, **dataclasses.asdict(config)}, indent=2) + "\n")
    for i, layer in enumerate(directions):
        print(f"layer {i}: {', '.join(layer)}")


def make_image_folder(
    output: Path,
    source: Literal["digits", "fashion-mnist"] = "digits",
    data_dir: Path | None = None,
    val_size: int = 360,
    seed: int = 0,
) -> None:
    """Write an offline labelled image set as an ImageFolder (train/ and val/ of one folder per class, PNG files),
    the layout `train-classifier` and `eval-classifier` read.

    Args:
        output: the directory to write (new or empty).
        source: digits (scikit-learn's 1,797 8x8 digits, bundled) or fashion-mnist (70,000 28x28 images; its four
            IDX files in ``--data_dir``).
        data_dir: the directory holding Fashion-MNIST's IDX files (not bundled).
        val_size: digits held out for val/ (Fashion-MNIST's val/ is its test split).
        seed: which digits are held out.
    """
    from longseq.core.io import InputError, check_not_overwriting, new_directory
    from longseq.vision.images import make_image_folder as write

    check_not_overwriting(output, data_dir)
    if not 1 <= val_size < 1797 or seed < 0:
        raise InputError(f"--val_size must lie in [1, 1797) and --seed be >= 0; got {val_size}, {seed}")
    with new_directory(output):
        counts = write(Path(output), source, data_dir=data_dir, val_size=val_size, seed=seed)
    print(f"{output}: {counts['train']} training and {counts['val']} validation images ({source})")


def train_classifier(
    output: Path,
    model: str = "localvim_fmnist",
    trainer: TrainerConfig = TrainerConfig(max_steps=1700, val_every_n_batches=500, limit_val_batches=8),  # noqa: B008
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-3, weight_decay=0.05, warmup_steps=100),  # noqa: B008
    data: ImageDataConfig = ImageDataConfig(),  # noqa: B008
    label_smoothing: float = 0.0,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    ema_decay: float = 0.0,
    drop_path_rate: float | None = None,
) -> None:
    """Train a LocalVim / LocalVMamba classifier on an ImageFolder (or a timm dataset) with timm's data pipeline,
    Mixup / CutMix, losses and EMA, in our Lightning loop.

    Args:
        output: the directory for the trained model (our format), preprocess.json (its classes and data config, what
            eval-classifier reads) and metrics.json; new or empty.
        model: a preset (localvim_fmnist, localvim_fmnist_search, ...), a .json config (extract-directions) or a
            finished run's output directory (its weights are the start); the channel count (grey or RGB) and the
            class count follow the data.
        trainer: length, checkpoints, logging, precision (AMP: bf16-mixed / 16-mixed), resume.
        optimizer: AdamW and the cosine schedule (default: lr 1e-3, weight decay 0.05, 100 warm-up steps).
        data: the images (--data.root DIR; default: scikit-learn's digits), augmentation and batching.
        label_smoothing: label smoothing of the cross-entropy, in [0, 1).
        mixup: Mixup alpha (timm.data.Mixup; 0: off); needs an even batch size.
        cutmix: CutMix alpha (0: off).
        ema_decay: keep an EMA of the weights (timm.utils.ModelEmaV3), evaluated and saved (0: off; e.g. 0.9998).
        drop_path_rate: stochastic depth (None: the model's).
    """
    import json
    import tempfile

    from longseq.core.io import atomic_output, check_not_overwriting, new_directory
    from longseq.core.train import build_trainer
    from longseq.vision.local_mamba.classify import ImageFolderData
    from longseq.vision.local_mamba.classify import train_classifier as fit_classifier

    output = Path(output)
    check_not_overwriting(output, model, data.root)
    trainer.check_outside(output)
    reg = _regularization(label_smoothing=label_smoothing, mixup=mixup, cutmix=cutmix, ema_decay=ema_decay)
    config, weights = _start(model)
    with tempfile.TemporaryDirectory(prefix="longseq-digits-") as scratch:
        root = _image_root(data, Path(scratch))
        lightning = build_trainer(trainer)  # seeds everything, so that a fresh model starts the same in every run
        images = ImageFolderData(data, root, seed=trainer.seed)
        fields = {"in_chans": images.in_chans, "num_classes": images.num_classes}
        if data.img_size is not None:
            fields["img_size"] = data.img_size
        if drop_path_rate is not None:
            fields["drop_path_rate"] = drop_path_rate
        net = _classifier(model, config, weights, **fields)
        preprocess = images.prepare(net)
        with new_directory(output):
            trained, metrics = fit_classifier(
                lightning, net, images, optimizer=optimizer, reg=reg, resume=trainer.resume
            )
            trained.save_pretrained(output)
            preprocess.save(output)
            with atomic_output(output / "metrics.json") as tmp:
                record = {"model": model, "data": data.root or "digits", "classes": images.num_classes, **metrics}
                tmp.write_text(json.dumps(record, indent=2) + "\n")
    print(f"validation accuracy {metrics['val_acc']:.4f} ({metrics['params']} parameters) -> {output}")


def eval_classifier(
    model: Path,
    data: ImageDataConfig = ImageDataConfig(),  # noqa: B008
    split: str = "val",
    output: Path | None = None,
    device: str = "cpu",
) -> None:
    """Evaluate a trained classifier on an image split: top-1 and top-5 accuracy, per-class accuracy and, for 20
    classes or fewer, a confusion-matrix plot.

    Args:
        model: a train-classifier output directory (its preprocess.json sets the classes and how images are read),
            or any LocalMamba checkpoint directory (then the folder's classes, in timm's order, and the model's data
            config).
        data: the images: --data.root (an ImageFolder) or --data.dataset; default: scikit-learn's digits, held out
            as make-image-folder holds them out. Only root, dataset, batch_size, num_workers and corrupt apply.
        split: the split folder (val, validation, test, train, ...; "" for class folders at the top).
        output: a directory for metrics.json and confusion.png (new or empty); None: print only.
        device: cpu, cuda, cuda:1, mps.
    """
    import json
    import tempfile

    from torch.utils.data import DataLoader

    from longseq.core.io import check_not_overwriting, new_directory, resolve_device
    from longseq.core.memory import reuse_freed_memory
    from longseq.core.registry import load_as
    from longseq.vision.local_mamba.classify import Preprocess, evaluate, open_split, plot_confusion
    from longseq.vision.local_mamba.local_vim import LocalVim
    from longseq.vision.local_mamba.local_vmamba import LocalVMamba

    model = Path(model)
    if not model.is_dir():
        raise InputError(f"--model {model} is not a checkpoint directory (a train-classifier output)")
    if output is not None:
        check_not_overwriting(output, model, data.root)
        if Path(output).exists() and any(Path(output).iterdir()):
            raise InputError(f"--output {output} already exists and is not empty")
    device = resolve_device(device)
    reuse_freed_memory()
    preprocess = Preprocess.load(model)
    net = load_as(model, (LocalVim, LocalVMamba))
    with tempfile.TemporaryDirectory(prefix="longseq-digits-") as scratch:
        root = _image_root(data, Path(scratch))
        class_map = None if preprocess is None else {c: i for i, c in enumerate(preprocess.classes)}
        grey = None if preprocess is None else preprocess.grey
        opened = open_split(data, root, split, class_map=class_map, grey=grey)
        if opened is None:
            raise InputError(
                f'{root} has no {split!r} split folder (--split names it; "" for class folders at the top)'
            )
        dataset, classes, grey, skipped = opened
        if len(classes) != net.num_classes:
            raise InputError(f"{model} has {net.num_classes} classes; {root} has {len(classes)}")
        if (1 if grey else 3) != net.config.in_chans:
            raise InputError(
                f"{model} takes {net.config.in_chans}-channel images; {root} holds {'grey' if grey else 'RGB'} ones"
            )
        data_config = preprocess.data_config if preprocess is not None else _model_data_config(net, grey)
        from timm.data import create_transform

        dataset.transform = create_transform(**data_config, is_training=False)
        loader = DataLoader(dataset, batch_size=data.batch_size, num_workers=data.num_workers)
        metrics = evaluate(net, loader, len(classes), device=device)
    topk = next(k for k in metrics if k.startswith("top") and k != "top1")
    print(
        f"{model} on {root} ({split or 'all'}): top-1 {metrics['top1']:.4f}, {topk[:3]}-{topk[3:]} "
        f"{metrics[topk]:.4f} over {metrics['images']} images" + (f" ({skipped} unreadable skipped)" if skipped else "")
    )
    if output is not None:
        with new_directory(output):
            record = {
                "model": str(model),
                "data": str(data.root or "digits"),
                "split": split,
                "classes": classes,
                "skipped": skipped,
                **metrics,
            }
            (Path(output) / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
            if len(classes) <= 20:
                plot_confusion(
                    metrics["confusion"],
                    classes,
                    Path(output) / "confusion.png",
                    f"{model.name}: top-1 {metrics['top1']:.3f}",
                )
        print(f"-> {output}")


def _image_root(data: ImageDataConfig, scratch: Path) -> Path:
    """The ImageFolder to read: --data.root, or scikit-learn's digits written into ``scratch`` when it is unset."""
    from longseq.vision.images import make_image_folder

    if data.root is None:
        make_image_folder(scratch, "digits")
        return scratch
    if not data.dataset and not Path(data.root).is_dir():
        raise InputError(f"--data.root {data.root} is not a directory (an ImageFolder)")
    return Path(data.root)


def _model_data_config(net, grey: bool) -> dict:
    """timm's data config of a model without a preprocess record (its img_size; 0.5 statistics for grey)."""
    from timm.data import resolve_data_config

    size = getattr(net.config, "img_size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    args = {"input_size": (1 if grey else 3, *size)}
    if grey:
        args.update(mean=(0.5,), std=(0.5,))
    return resolve_data_config(args, model=net)


def _regularization(**fields):
    from longseq.vision.local_mamba.classify import Regularization

    try:
        return Regularization(**fields)
    except ValueError as err:
        raise InputError(f"--{err}") from None


def _start(model: str):
    """(config, model with weights or None): a finished run's directory, or an architecture (preset, .json)."""
    from longseq.core.registry import load_as
    from longseq.vision.local_mamba.convert import named_architecture
    from longseq.vision.local_mamba.local_vim import LocalVim
    from longseq.vision.local_mamba.local_vmamba import LocalVMamba

    if not Path(model).is_dir():
        return named_architecture(model), None
    net = load_as(model, (LocalVim, LocalVMamba))
    return net.config, net


def _classifier(model: str, config, weights, **fields):
    """The model to train: ``weights`` if given (their in_chans and num_classes must be the data's; img_size and
    drop_path_rate adapt them), else ``config`` with ``fields``, built fresh."""
    import dataclasses

    import longseq
    from longseq.core.checkpoint import CheckpointError
    from longseq.vision.local_mamba.local_vim import LocalVim, LocalVimConfig
    from longseq.vision.local_mamba.local_vmamba import LocalVMamba

    if weights is not None:
        differ = [
            f"{name} {getattr(config, name)} (the data: {fields[name]})"
            for name in ("in_chans", "num_classes")
            if getattr(config, name) != fields[name]
        ]
        if differ:
            raise InputError(f"{model} does not fit the data: {', '.join(differ)}")
        adapt = {k: v for k, v in fields.items() if k not in ("in_chans", "num_classes") and getattr(config, k) != v}
        return longseq.from_pretrained(model, **adapt) if adapt else weights
    try:
        config = dataclasses.replace(config, **fields)
    except ValueError as err:
        raise CheckpointError(f"{model}: {err}") from None
    return LocalVim.from_config(config) if isinstance(config, LocalVimConfig) else LocalVMamba.from_config(config)
