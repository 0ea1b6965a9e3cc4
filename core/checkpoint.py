"""Safe checkpoint I/O and our checkpoint format.

Our format is a directory with ``config.json`` (the model's dataclass config plus ``model_type``) and
``model.safetensors``; `core.registry` loads it, and official formats through each family's layouts. Nothing here ever
executes code from a file: safetensors, or ``torch.load(weights_only=True)`` with inert stand-ins for the
data-only classes that Lightning checkpoints pickle (OmegaConf configs); any other global is refused.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# Modules whose pickled objects are plain data (configs, metadata). Their classes load as inert stand-ins.
_DATA_ONLY_MODULES = ("omegaconf.", "pytorch_lightning.utilities.parsing", "lightning.fabric.utilities.data")
# collections.defaultdict: OmegaConf keeps its node flags in one (e.g. the original HyenaDNA weights.ckpt).
_SAFE_BUILTINS = [(typing.Any, "typing.Any"), collections.defaultdict, dict, list, set, tuple]


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: unreadable, corrupt, unsafe, or made for another model."""


def _stand_in(qualified: str) -> type:
    module, _, name = qualified.rpartition(".")

    def setstate(self, state):
        self.__dict__["_state"] = state

    return type(name, (), {"__module__": module, "__qualname__": name, "__setstate__": setstate})


def _data_only_globals(path: Path) -> list[type]:
    """Stand-ins for the data-only classes a zip checkpoint names, found by one scan (no unpickling), so the
    load below usually succeeds at the first try. Legacy and corrupt files scan to nothing."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: the retry loop in load_pickle finds the classes instead
        return []
    return [_stand_in(name) for name in names if name.startswith(_DATA_ONLY_MODULES)]


def _reason(message: str) -> str:
    """The specific line of a torch.load error (its weights-only errors open and close with boilerplate)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    specific = [line for line in lines if not line.startswith(boilerplate)]
    return (specific or lines or ["unknown error"])[0]


def load_pickle(path: str | os.PathLike) -> Any:
    """Read a torch pickle (``.bin``, ``.pt``, ``.pth``, ``.ckpt``) without running code from it.

    Tensors and containers come out; OmegaConf / Lightning config objects come out as inert stand-ins;
    any other global (e.g. ``os.system``) raises `CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    allowed: list = list(_SAFE_BUILTINS) + _data_only_globals(path)
    for _ in range(64):
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            message = str(err)
            # torch words it "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y whose module x is blocked"
            found = re.search(r"GLOBAL ([\w.]+)", message)
            if found and found.group(1).startswith(_DATA_ONLY_MODULES):
                allowed.append(_stand_in(found.group(1)))
                continue
            if found:
                raise CheckpointError(
                    f"{path} refers to {found.group(1)}, which could run code; refusing to load it"
                ) from None
            problem = f"cannot read {path} as a torch checkpoint (truncated or corrupt?): {_reason(message)}"
            raise CheckpointError(problem) from None
    raise CheckpointError(f"{path} refers to too many unknown classes; refusing to load it")


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A flat name -> tensor dict from a ``.safetensors`` file or a torch pickle holding one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"cannot read {path} as safetensors (truncated or corrupt?): {err}") from None
    obj = load_pickle(path)
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors")
    return dict(obj)


def format_keys(keys: list[str], limit: int = 3) -> str:
    """The first ``limit`` keys and how many more, for one-line error messages."""
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise a one-line `CheckpointError` naming missing, unexpected or mis-shaped keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {format_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected {format_keys(unexpected)}")
    if wrong:
        problems.append(f"shape mismatch (file vs model) {format_keys(wrong)}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))


def load_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """`check_state_dict`, then ``load_state_dict(strict=True)``."""
    check_state_dict(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)
    return model


def _replace_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(directory: str | os.PathLike, model: nn.Module, config: Any, model_type: str) -> Path:
    """Write ``config.json`` (``config`` a dataclass) and ``model.safetensors`` into ``directory``.

    Each file is written under a temporary name and renamed, so a failure leaves no half-written file.
    Tied weights are stored once (safetensors' ``save_model``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"model_type": model_type, **dataclasses.asdict(config)}
    _replace_atomically(directory / WEIGHTS_NAME, lambda tmp: save_model(model, str(tmp)))
    _replace_atomically(directory / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))
    return directory


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint directory."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_NAME} in {directory}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None


def config_from_dict(config_cls: type, values: Mapping[str, Any], source: str):
    """Build a dataclass config from a dict, rejecting unknown fields with a one-line error."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - names - {"model_type"})
    if unknown:
        raise CheckpointError(f"{source} has fields {config_cls.__name__} does not know: {', '.join(unknown)}")
    try:
        return config_cls(**{k: v for k, v in values.items() if k in names})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid {config_cls.__name__}: {err}") from None


def retie(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load ``tensors`` strictly into ``model``, filling each tied alias the file stores once (safetensors'
    ``save_model`` keeps one name per shared tensor) from the model's own sharing."""
    state = model.state_dict()
    for key in state.keys() - tensors.keys():
        alias = next((k for k, v in state.items() if k in tensors and v.data_ptr() == state[key].data_ptr()), None)
        if alias is not None:
            tensors[key] = tensors[alias]
    return load_strict(model, tensors, source)
