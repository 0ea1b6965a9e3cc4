"""The LocalMamba commands of the `vision` console script: convert, extract-directions, train-classifier.

Plain typed functions (jsonargparse builds the CLI from them). Every input is checked before work starts: bad input
raises `core.io.InputError` / `core.checkpoint.CheckpointError` (one line, exit 2); an output never overwrites an
input, output directories are created only once the inputs pass, and files are written under a temporary name.

``--model`` names an architecture: a preset (``longseq.list_models("local*")``) or a JSON config (what
``extract-directions`` writes, or a checkpoint's ``config.json``); ``train-classifier`` also starts from the weights of
a finished run (its output directory).
"""

from __future__ import annotations

from pathlib import Path

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


def train_classifier(
    output: Path,
    model: str = "localvim_fmnist",
    trainer: TrainerConfig = TrainerConfig(max_steps=1700, val_every_n_batches=500, limit_val_batches=8),  # noqa: B008
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-3, weight_decay=0.05, warmup_steps=100),  # noqa: B008
    data: ImageDataConfig = ImageDataConfig(),  # noqa: B008
    label_smoothing: float = 0.0,
) -> None:
    """Train a LocalVim / LocalVMamba classifier on an offline image set (Fashion-MNIST or scikit-learn digits).

    Args:
        output: the directory for the trained model (our format) and its metrics.json; new or empty.
        model: a preset (localvim_fmnist, localvim_fmnist_search, ...), a .json config (extract-directions) or a
            finished run's output directory (its weights are the start); the channel count, class count and image
            size follow the data.
        trainer: length, checkpoints, logging, resume (default: 1,700 steps, about 2 epochs of Fashion-MNIST).
        optimizer: AdamW and the cosine schedule (default: lr 1e-3, weight decay 0.05, 100 warm-up steps).
        data: the image set (--data.dataset fashion-mnist|digits, --data.batch_size, ...).
        label_smoothing: cross-entropy label smoothing, in [0, 1).
    """
    import json

    from longseq.core.io import InputError, atomic_output, check_not_overwriting, new_directory
    from longseq.core.train import build_trainer
    from longseq.vision.local_mamba.classify import ImageClassificationData
    from longseq.vision.local_mamba.classify import train_classifier as fit_classifier

    output = Path(output)
    check_not_overwriting(output, model)
    trainer.check_outside(output)
    if not 0.0 <= label_smoothing < 1.0:
        raise InputError(f"--label_smoothing must lie in [0, 1); got {label_smoothing}")
    config, weights = _start(model)
    lightning = build_trainer(trainer)  # seeds everything, so that a fresh model starts the same in every run
    images = ImageClassificationData(data, seed=trainer.seed)
    channels, height, _ = images.image_shape
    net = _classifier(model, config, weights, in_chans=channels, num_classes=images.num_classes, img_size=height)
    with new_directory(output):
        metrics = fit_classifier(
            lightning, net, images, optimizer=optimizer, label_smoothing=label_smoothing, resume=trainer.resume
        )
        net.save_pretrained(output)
        with atomic_output(output / "metrics.json") as tmp:
            tmp.write_text(json.dumps({"model": model, "dataset": data.dataset, **metrics}, indent=2) + "\n")
    print(f"test accuracy {metrics['test_acc']:.4f} ({metrics['params']} parameters) -> {output}")


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
    """The model to train: ``weights`` if given (they must fit the data's ``fields``: in_chans, num_classes and
    img_size), else ``config`` with those fields, built fresh."""
    import dataclasses

    from longseq.core.checkpoint import CheckpointError
    from longseq.core.io import InputError
    from longseq.vision.local_mamba.local_vim import LocalVim, LocalVimConfig
    from longseq.vision.local_mamba.local_vmamba import LocalVMamba

    if not isinstance(config, LocalVimConfig):
        del fields["img_size"]  # LocalVMamba takes any size
    if weights is not None:
        differ = [
            f"{name} {getattr(config, name)} (the data: {v})"
            for name, v in fields.items()
            if getattr(config, name) != v
        ]
        if differ:
            raise InputError(f"{model} does not fit the data: {', '.join(differ)}")
        return weights
    try:
        config = dataclasses.replace(config, **fields)
    except ValueError as err:
        raise CheckpointError(f"{model}: {err}") from None
    return LocalVim.from_config(config) if isinstance(config, LocalVimConfig) else LocalVMamba.from_config(config)
