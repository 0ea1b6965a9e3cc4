"""Training a byte model on a directory of files: split by file, next-byte cross-entropy, bits per byte, exact
resume (Lightning through `core.train`).

A run directory holds ``split.json`` (which files went where), ``model_config.json`` (the architecture, so a
resumed run rebuilds the same model), ``checkpoints/last.ckpt`` (Lightning, for ``resume``), ``logs/`` (CSV) and,
at the end, ``model/`` (our checkpoint format, for ``bytelm generate`` / ``eval``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import torch

from longseq.bytes.data.files import SPLITS, list_files, read_bytes, split_files
from longseq.bytes.models import MODEL_TYPES, ByteLM, build
from longseq.core.checkpoint import CheckpointError, config_from_dict
from longseq.core.io import InputError, atomic_output
from longseq.core.registry import from_pretrained
from longseq.core.train import CausalLMTask, OptimizerConfig, TokenWindowDataModule, TrainerConfig, build_trainer, fit


class ByteLMTask(CausalLMTask):
    """Next-byte cross-entropy (`core.train.CausalLMTask`) that also reports bits per byte."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss)
        self.log("train/bpb", loss / math.log(2), prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss = self.loss(batch)
        self.log("val/loss", loss, sync_dist=True)
        self.log("val/bpb", loss / math.log(2), prog_bar=True, sync_dist=True)


def _write_json(path: Path, payload: dict) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")


def _model_for_run(model: str, out: Path, resuming: bool) -> ByteLM:
    """The run's model: rebuilt from the run's own record when resuming, else from ``model``."""
    record = out / "model_config.json"
    if resuming and record.is_file():
        values = json.loads(record.read_text())
        kind = values.get("model_type")
        if kind not in MODEL_TYPES:
            raise CheckpointError(f"{record} names an unknown model type {kind!r}")
        config_cls, _ = MODEL_TYPES[kind]
        return build(config_from_dict(config_cls, values, str(record)))
    net = from_pretrained(model)
    _write_json(record, {"model_type": net.model_type, **asdict(net.config)})
    return net


def train_on_files(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str,
    trainer: TrainerConfig,
    optimizer: OptimizerConfig,
    batch_size: int = 8,
    seq_len: int | None = None,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    split_seed: int = 0,
    resume: bool = False,
) -> dict:
    """Train ``model`` (a preset or a checkpoint directory) on the files under ``data``; return a summary.

    ``seq_len`` bytes per training window (default and maximum: the model's context - 1); windows do not
    overlap and are shuffled each epoch. With ``resume``, continue from ``out/checkpoints/last.ckpt`` if it exists
    (the model is then rebuilt from the run's ``model_config.json``); the checkpoint directory and logs are
    the trainer config's (the CLI puts them in ``out``).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    last = None if trainer.checkpoint_dir is None else Path(trainer.checkpoint_dir) / "last.ckpt"
    resuming = resume and last is not None and last.is_file()
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")

    files = list_files(data)
    split = split_files(files, data, val_fraction=val_fraction, test_fraction=test_fraction, seed=split_seed)
    root = Path(data)
    _write_json(
        out / "split.json",
        {name: [str(p.relative_to(root)) if p != root else p.name for p in split[name]] for name in SPLITS},
    )
    streams = {name: read_bytes(split[name]) for name in ("train", "val")}

    lightning_trainer = build_trainer(trainer)  # seeds everything first, so the model's init follows the seed
    net = _model_for_run(model, out, resuming)
    seq_len = net.context - 1 if seq_len is None else seq_len
    if not 1 <= seq_len <= net.context - 1:
        raise InputError(f"seq_len must lie in [1, {net.context - 1}] for this model, got {seq_len}")
    if streams["train"].numel() < seq_len + 1:
        raise InputError(f"the training files hold {streams['train'].numel()} bytes, fewer than one window")
    val = streams["val"] if streams["val"].numel() > seq_len else None
    datamodule = TokenWindowDataModule(streams["train"], val, seq_len=seq_len, batch_size=batch_size, seed=trainer.seed)
    task = ByteLMTask(net, optimizer=optimizer)
    fit(lightning_trainer, task, datamodule, resume=str(last) if resuming else None)
    net.save_pretrained(out / "model")
    metrics = {k: float(v) for k, v in lightning_trainer.callback_metrics.items()}
    summary = {
        "steps": lightning_trainer.global_step,
        "train_bytes": int(streams["train"].numel()),
        "val_bytes": int(streams["val"].numel()),
        "files": {name: len(split[name]) for name in SPLITS},
        "metrics": metrics,
    }
    _write_json(out / "summary.json", summary)
    return summary
