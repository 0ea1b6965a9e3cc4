"""The LocalMamba commands of the `vision` console script: convert, extract-directions.

Plain typed functions (jsonargparse builds the CLI from them); heavy imports happen inside. Bad input raises
`core.io.InputError` / `core.checkpoint.CheckpointError` (one line, exit 2); outputs are written under a temporary
name and renamed when complete.
"""

from __future__ import annotations

from pathlib import Path


def load_model_config(model: str, **overrides):
    """A preset name, or a JSON config file (``model_type`` + fields, as `extract_directions` writes it)."""
    import dataclasses
    import json

    from core.checkpoint import CheckpointError, config_from_dict
    from core.io import InputError
    from vision.models.local_mamba_presets import MODEL_TYPES, PRESETS, preset

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
    from vision.models.local_mamba_presets import model_class

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

    from core.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_pickle, load_tensors
    from core.io import InputError, atomic_output
    from vision.convert import unwrap
    from vision.models.local_mamba import extract_directions as choose
    from vision.models.local_vim import LocalVimConfig

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
