"""The LocalMamba commands of the `vision` console script: convert, extract-directions, train-classifier.

Plain typed functions (jsonargparse builds the CLI from them); heavy imports happen inside. Bad input raises
`core.io.InputError` / `core.checkpoint.CheckpointError` (one line, exit 2); outputs are written under a temporary
name and renamed when complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI reads these annotations; importing them for real would load lightning at --help
    from longseq.core.train import OptimizerConfig, TrainerConfig
    from longseq.vision.local_mamba.classify import ImageDataConfig


def load_model_config(model: str, **overrides):
    """A preset name, or a JSON config file (``model_type`` + fields, as `extract_directions` writes it)."""
    import dataclasses
    import json

    from longseq.core.checkpoint import CheckpointError, config_from_dict
    from longseq.core.io import InputError
    from longseq.vision.local_mamba.presets import MODEL_TYPES, PRESETS, preset

    overrides = {k: v for k, v in overrides.items() if v is not None}
    path = Path(model)
    if model in PRESETS:
        config = preset(model)
    elif path.suffix == ".json":
        if not path.is_file():
            raise InputError(f"no such model config: {path}")
        try:
            values = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{path} is not valid JSON: {err}") from None
        model_type = values.get("model_type") if isinstance(values, dict) else None
        if model_type not in MODEL_TYPES:
            raise InputError(f"{path}: model_type {model_type!r} is not one of {', '.join(MODEL_TYPES)}")
        config = config_from_dict(MODEL_TYPES[model_type][0], values, str(path))
    else:
        raise InputError(f"{model!r} is neither a LocalMamba preset ({', '.join(PRESETS)}) nor a .json config")
    try:
        return dataclasses.replace(config, **overrides)
    except ValueError as err:
        raise CheckpointError(f"{model}: {err}") from None


def convert(checkpoint: Path, model: str, out: Path, num_classes: int | None = None, img_size: int | None = None):
    """Convert an official LocalMamba checkpoint (hunto/LocalMamba release .ckpt / .pth) into our format.

    Args:
        checkpoint: the official file.
        model: the architecture it was trained as: a preset (localvim_tiny, localvim_tiny_middle_cls_token,
            localvmamba_small, ...) or a .json config; the file does not record the scan directions.
        out: the checkpoint directory to write (config.json + model.safetensors).
        num_classes: a new class count (a fresh head); default: the preset's.
        img_size: a new input size for LocalVim (position tables resized).
    """
    from longseq.vision.local_mamba.presets import model_class

    config = load_model_config(model, num_classes=num_classes, img_size=img_size)
    net = model_class(config).from_config(config)
    net.load_pretrained(checkpoint)
    net.save_pretrained(out)
    print(f"{checkpoint} -> {out} ({sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters)")


def extract_directions(checkpoint: Path, out: Path, topk: int = 4, model: str | None = None) -> None:
    """Pick each layer's top-k scan directions from a trained search supernet and write a model config.

    Args:
        checkpoint: the supernet: our checkpoint directory, or an official .ckpt / .pth file.
        out: the JSON config to write (``model_type`` + config fields with ``directions`` filled in); train it
            with ``vision train-classifier --model out.json``.
        topk: directions kept per layer (LocalMamba keeps 4).
        model: the preset or .json config to put the directions into (e.g. localvim_tiny); default: the
            supernet's own config (needed for an official file, which carries no config).
    """
    import dataclasses
    import json

    from longseq.core.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_pickle, load_tensors
    from longseq.core.io import InputError, atomic_output
    from longseq.vision.local_mamba.convert import unwrap
    from longseq.vision.local_mamba.local_vim import LocalVimConfig
    from longseq.vision.local_mamba.mixers import extract_directions as choose

    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        state = load_tensors(checkpoint / WEIGHTS_NAME)
        model = model or str(checkpoint / CONFIG_NAME)
    elif checkpoint.is_file():
        state = unwrap(load_pickle(checkpoint), str(checkpoint))
        if model is None:
            raise InputError(f"{checkpoint} is an official file without a config: pass --model (e.g. localvim_tiny)")
    else:
        raise InputError(f"no such checkpoint: {checkpoint}")
    try:
        directions = choose(state, topk)
    except ValueError as err:
        raise InputError(f"{checkpoint}: {err}") from None
    config = load_model_config(model, directions=directions)
    model_type = "local_vim" if isinstance(config, LocalVimConfig) else "local_vmamba"
    searched = "local_vim" if any(k.endswith("mixer.multi_scan.weights") for k in state) else "local_vmamba"
    if model_type != searched:
        raise InputError(f"{checkpoint} is a {searched} supernet; {model} is a {model_type} config")
    with atomic_output(out) as tmp:
        tmp.write_text(json.dumps({"model_type": model_type, **dataclasses.asdict(config)}, indent=2) + "\n")
    for i, layer in enumerate(directions):
        print(f"layer {i}: {', '.join(layer)}")


def train_classifier(
    out: Path,
    model: str = "localvim_fmnist",
    data: ImageDataConfig | None = None,
    trainer: TrainerConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    label_smoothing: float = 0.0,
    resume: str | None = None,
) -> None:
    """Train a LocalVim / LocalVMamba classifier on an offline image set (Fashion-MNIST or scikit-learn digits).

    Args:
        out: the directory for the trained model (our format) and its metrics.json.
        model: a preset (localvim_fmnist, localvim_fmnist_search, ...) or a .json config (extract-directions);
            the channel count, class count and image size follow the data.
        data: the image set (--data.dataset fashion-mnist|digits, --data.batch_size, ...).
        trainer: length, checkpoints, logging (default: 1,700 steps, about 2 epochs of Fashion-MNIST).
        optimizer: AdamW and the cosine schedule (default: lr 1e-3, weight decay 0.05, 100 warm-up steps).
        label_smoothing: cross-entropy label smoothing.
        resume: "last" or a .ckpt file to continue from (needs --trainer.checkpoint_dir).
    """
    import json

    from longseq.core.io import InputError, atomic_output
    from longseq.core.train import OptimizerConfig, TrainerConfig
    from longseq.vision.local_mamba.classify import ImageClassificationData, ImageDataConfig, train_classifier
    from longseq.vision.local_mamba.local_vim import LocalVimConfig
    from longseq.vision.local_mamba.presets import model_class

    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: directory {out.parent} does not exist")
    data_module = ImageClassificationData(data or ImageDataConfig())
    channels, height, _ = data_module.image_shape
    fields = {"in_chans": channels, "num_classes": data_module.num_classes}
    config = load_model_config(model)
    if isinstance(config, LocalVimConfig):
        fields["img_size"] = height
    config = load_model_config(model, **fields)
    net = model_class(config).from_config(config)
    trainer = trainer or TrainerConfig(max_steps=1700, val_every_n_batches=500, limit_val_batches=8)
    optimizer = optimizer or OptimizerConfig(lr=1e-3, weight_decay=0.05, warmup_steps=100)
    metrics = train_classifier(
        net, data_module, trainer=trainer, optimizer=optimizer, label_smoothing=label_smoothing, resume=resume
    )
    net.save_pretrained(out)
    with atomic_output(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps({"model": model, "dataset": data_module.config.dataset, **metrics}, indent=2) + "\n")
    print(f"test accuracy {metrics['test_acc']:.4f} ({metrics['params']} parameters) -> {out}")
