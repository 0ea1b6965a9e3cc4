"""One registry of model families, and `from_pretrained` for anything a family can read.

A family declares itself once, beside its model class, as a `Family`: its model class, config class, presets
and the official checkpoint layouts it reads. `INDEX` below says where each family is declared and which
names and ``model_type`` values it answers to, so that loading a name imports only the family that declares it
(and a genomics user never imports timm).

``from_pretrained(name_or_path, **overrides)`` resolves, in this order:

1. a preset name (`list_models`): a randomly initialised model of that shape;
2. a local path: a directory in our format (``config.json`` with ``model_type`` + ``model.safetensors``), or
   any official layout a family reads (a directory or a single file);
3. a Hugging Face Hub id (``org/name``) that is not a local path: fetched into huggingface_hub's cache
   (offline with ``HF_HUB_OFFLINE=1`` once cached), then read as a local directory.

The model comes back in eval mode. ``overrides`` replace config fields (a preset's, or a checkpoint's where
the weights still fit) or tell an official layout what its files cannot (VALL-E X's head count). Anything
that cannot be loaded raises `CheckpointError` with one line naming the problem.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import functools
import importlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from longseq.core.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    config_from_dict,
    load_pickle,
    load_tensors,
    read_config,
    retie,
)


class Source:
    """A local path being identified: its ``config.json`` (directories) or its contents (files), each read once.

    Layouts' ``matches`` look at these; reading them never runs code from the file.
    """

    def __init__(self, path: Path):
        self.path = path

    @functools.cached_property
    def config(self) -> dict[str, Any] | None:
        """The parsed ``config.json`` of a directory (None for a file, or a directory without one)."""
        if not (self.path / CONFIG_NAME).is_file():
            return None
        return read_config(self.path)

    @functools.cached_property
    def contents(self) -> Any:
        """A file's contents: a tensor dict for ``.safetensors``, else the safely unpickled object."""
        if self.path.suffix == ".safetensors":
            return load_tensors(self.path)
        return load_pickle(self.path)

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Layout:
    """An official checkpoint format: how to recognise it and how to load it.

    Args:
        name: e.g. "hyenadna-hf".
        matches: (source) -> whether the path is in this layout. Directories are asked first by ``config``;
            a file's ``contents`` is unpickled once and shared by every layout that asks.
        load: (source, **overrides) -> the model (eval mode is set by the registry).
        files: True if this layout is a single file (else a directory).
        overrides: the keyword arguments ``load`` accepts (what the files cannot tell); others are refused.
    """

    name: str
    matches: Callable[[Source], bool]
    load: Callable[..., nn.Module]
    files: bool = False
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    """A model family, declared once beside its model class.

    Args:
        model_class: the model; has a ``model_type`` class attribute (the ``config.json`` tag of our format).
        config_class: its dataclass config.
        presets: name -> config (randomly initialised models of the released and test shapes).
        layouts: the official formats it reads.
        build: config -> model (default: ``model_class(config)``).
        adapt: (loaded model, overrides) -> model, for overrides that change a checkpoint's architecture
            (e.g. VALL-E 2 moved to another tokenizer); without it, overrides replace config fields before the
            weights load strictly.
        example: (model) -> the positional arguments of a tiny forward pass (the registry's generic test runs
            every preset small enough for the CPU on it).
    """

    model_class: type[nn.Module]
    config_class: type
    presets: Mapping[str, Any] = field(default_factory=dict)
    layouts: tuple[Layout, ...] = ()
    build: Callable[[Any], nn.Module] | None = None
    adapt: Callable[[nn.Module, dict[str, Any]], nn.Module] | None = None
    example: Callable[[nn.Module], tuple] | None = None

    @property
    def model_type(self) -> str:
        return self.model_class.model_type

    def make(self, config) -> nn.Module:
        return self.build(config) if self.build is not None else self.model_class(config)


@dataclass(frozen=True)
class Entry:
    """Where a family is declared (``"module:ATTRIBUTE"``) and the names it answers to."""

    family: str
    model_types: tuple[str, ...]
    """``config.json`` ``model_type`` values it reads: ours first, then official ones (e.g. HF "mamba")."""
    presets: tuple[str, ...] = ()


# Every family, in the order official layouts are tried for a path without a known model_type.
INDEX: tuple[Entry, ...] = (
    Entry(
        "longseq.core.convert:FAMILY",
        ("causal_lm", "mamba"),
        (
            "mamba-130m",
            "mamba-370m",
            "mamba-790m",
            "mamba-1.4b",
            "mamba-2.8b",
            "mamba2-130m",
            "mamba2-370m",
            "mamba2-780m",
            "mamba2-1.3b",
            "mamba2-2.7b",
            "mamba-tiny",
            "mamba2-tiny",
            "hybrid-tiny",
        ),
    ),
    Entry(
        "longseq.genomics.convert:HYENADNA",
        ("hyenadna",),
        (
            "hyenadna-tiny-1k",
            "hyenadna-tiny-1k-d256",
            "hyenadna-tiny-16k-d128",
            "hyenadna-small-32k",
            "hyenadna-medium-160k",
            "hyenadna-medium-450k",
            "hyenadna-large-1m",
            "hyenadna-test",
        ),
    ),
    Entry(
        "longseq.genomics.convert:CADUCEUS",
        ("caduceus",),
        (
            "caduceus-ps-131k",
            "caduceus-ph-131k",
            "caduceus-ps-1k-d256",
            "caduceus-ph-1k-d256",
            "caduceus-ps-1k-d118",
            "caduceus-ph-1k-d118",
            "caduceus-ps-test",
            "caduceus-ph-test",
        ),
    ),
    Entry("longseq.genomics.models.classifier:FAMILY", ("dna_classifier",)),
    Entry(
        "longseq.bytes.models.mblm:FAMILY",
        ("mblm",),
        ("mblm-tiny", "mblm-tiny-3stage", "mblm-demo", "mblm-small-tt", "mblm-small-st", "mblm-1m"),
    ),
    Entry("longseq.bytes.models.megabyte:FAMILY", ("megabyte",), ("megabyte-tiny", "megabyte-small")),
    Entry("longseq.speech.codecs.mel:FAMILY", ("mel_codec",), ("mel-24k", "mel-tiny")),
    Entry("longseq.speech.codecs.mel_vae:FAMILY", ("mel_vae",), ("mel-vae", "mel-vae-tiny")),
    Entry("longseq.speech.models:VALLE2", ("valle2",), ("valle2-tiny", "valle2-small", "valle-x")),
    Entry("longseq.speech.models:CLAM_TTS", ("clam_tts",), ("clam-tts-tiny", "clam-tts-small")),
    Entry("longseq.speech.models:SPEECHSSM", ("speechssm",), ("speechssm-tiny", "speechssm-small")),
    Entry(
        "longseq.vision.local_mamba.convert:LOCAL_VIM",
        ("local_vim",),
        (
            "localvim_tiny",
            "localvim_tiny_middle_cls_token",
            "localvim_small",
            "localvim_tiny_search",
            "localvim_fmnist",
            "localvim_fmnist_search",
            "localvim_test",
            "localvim_test_search",
        ),
    ),
    Entry(
        "longseq.vision.local_mamba.convert:LOCAL_VMAMBA",
        ("local_vmamba",),
        (
            "localvmamba_tiny",
            "localvmamba_small",
            "localvmamba_tiny_search",
            "localvmamba_small_search",
            "localvmamba_test",
            "localvmamba_test_search",
        ),
    ),
    Entry(
        "longseq.vision.vl_mamba.model:FAMILY",
        ("vl_mamba",),
        ("vl-mamba-siglip", "vl-mamba-clip", "vl-mamba-tiny", "vl-mamba-test"),
    ),
    Entry(
        "longseq.vision.btb3d.convert:FAMILY",
        ("btb3d",),
        ("btb3d-8x8x8", "btb3d-16x16x8", "btb3d-8x8x8-w32", "btb3d-tiny", "btb3d-tiny-16x16x8"),
    ),
)

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def family(entry: Entry) -> Family:
    """The `Family` an entry points to (imports its module)."""
    module, _, attribute = entry.family.partition(":")
    return getattr(importlib.import_module(module), attribute)


def list_models(pattern: str = "*") -> list[str]:
    """Every preset name matching a shell-style ``pattern`` (no module is imported)."""
    return [name for entry in INDEX for name in entry.presets if fnmatch.fnmatchcase(name, pattern)]


def from_pretrained(name_or_path: str | os.PathLike, **overrides) -> nn.Module:
    """A model, in eval mode, from a preset, a local checkpoint (ours or official) or a Hub id (module docstring).

    Raises:
        CheckpointError: an unknown name, a path no family reads, or weights that do not fit (one line).
    """
    name = str(name_or_path)
    for entry in INDEX:
        if name in entry.presets:
            return _from_preset(family(entry), name, overrides).eval()
    path = Path(name_or_path).expanduser()
    if not path.exists() and _HUB_ID.fullmatch(name):
        path = _hub_snapshot(name)
    if not path.exists():
        raise CheckpointError(
            f"unknown model {name!r}: not a preset (longseq.list_models()), a local path or a Hugging Face Hub id"
        )
    return _from_path(Source(path), overrides).eval()


def _from_preset(fam: Family, name: str, overrides: dict[str, Any]) -> nn.Module:
    return fam.make(_replace(copy.deepcopy(fam.presets[name]), overrides, f"preset {name}"))


def _from_path(source: Source, overrides: dict[str, Any]) -> nn.Module:
    is_dir = source.path.is_dir()
    if is_dir and source.config is None:
        raise CheckpointError(f"{source} has no {CONFIG_NAME}: not a checkpoint directory")
    model_type = source.config.get("model_type") if is_dir else None
    # A model_type some family reads: only that family is asked (official layouts first, since HF's
    # HyenaDNA and Caduceus configs carry the same model_type as ours).
    known = [entry for entry in INDEX if model_type in entry.model_types]
    for entry in known or INDEX:
        fam = family(entry)
        for layout in fam.layouts:
            if layout.files == is_dir or not layout.matches(source):
                continue
            unknown = sorted(set(overrides) - set(layout.overrides))
            if unknown:
                accepted = ", ".join(layout.overrides) or "none"
                raise CheckpointError(
                    f"{source} ({layout.name}) takes no setting {', '.join(unknown)} (accepted: {accepted})"
                )
            return layout.load(source, **overrides)
        if model_type == fam.model_type:
            return load_ours(fam, source.path, overrides)
    what = f"a {model_type!r} model_type" if model_type else "a checkpoint"
    raise CheckpointError(f"{source} is {what} that no longseq family reads")


def load_ours(fam: Family, directory: Path, overrides: dict[str, Any]) -> nn.Module:
    """Our format: ``config.json`` (+ overrides) builds the model, ``model.safetensors`` fills it strictly."""
    if fam.adapt is not None and overrides:
        return fam.adapt(load_ours(fam, directory, {}), overrides)
    values = read_config(directory)
    source = str(directory / CONFIG_NAME)
    config = _replace(config_from_dict(fam.config_class, values, source), overrides, source)
    model = fam.make(config)
    return retie(model, load_tensors(directory / WEIGHTS_NAME), str(directory))


def _replace(config, overrides: dict[str, Any], source: str):
    """``config`` with fields replaced; an unknown field or a bad value is a one-line `CheckpointError`."""
    if not overrides:
        return config
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise CheckpointError(f"{source}: {type(config).__name__} has no field {', '.join(unknown)}")
    try:
        return dataclasses.replace(config, **overrides)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid {type(config).__name__}: {err}") from None


def _hub_snapshot(repo_id: str) -> Path:
    """The local snapshot of a Hub model repository (downloaded on first use; HF_HUB_OFFLINE=1 reads the cache)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id))
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{repo_id} is not in the Hugging Face cache and cannot be downloaded (offline?); "
            "no local path or preset has this name either"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        message = " ".join(str(err).split())[:200]
        raise CheckpointError(f"cannot fetch {repo_id} from the Hugging Face Hub: {message}") from None


def load_as(name_or_path: str | os.PathLike, kinds: type | tuple[type, ...], what: str = "", **overrides):
    """`from_pretrained`, refusing a model that is none of ``kinds`` with one line naming ``what`` was expected
    (default: the class names)."""
    model = from_pretrained(name_or_path, **overrides)
    if not isinstance(model, kinds):
        classes = kinds if isinstance(kinds, tuple) else (kinds,)
        expected = what or " or ".join(cls.__name__ for cls in classes)
        raise CheckpointError(f"{name_or_path} holds a {type(model).__name__}, not a {expected}")
    return model


class Pretrained:
    """``save_pretrained`` / ``from_pretrained`` for a registered model class (mixed into the nn.Module).

    The class sets ``model_type`` (the ``config.json`` tag) and keeps its dataclass config in ``self.config``.
    """

    model_type: str
    config: Any

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write our format: ``config.json`` + ``model.safetensors`` (tied weights stored once), atomically."""
        from longseq.core.checkpoint import save_checkpoint

        return save_checkpoint(directory, self, self.config, self.model_type)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **overrides):
        """`longseq.from_pretrained`, refusing a model of another class with a one-line `CheckpointError`."""
        return load_as(name_or_path, cls, **overrides)
