"""Training a byte model on a directory of files: split by file, next-byte cross-entropy, bits per byte, exact
resume (Lightning through `core.train`).

The output directory is created once every input has passed its checks, and removed again if training fails
(Lightning checkpoints and logs therefore live outside it: `TrainerConfig.checkpoint_dir` and ``log_dir``). It
gets ``split.json`` (which files went where) at the start and, at the end, the model in our checkpoint format
(``config.json`` + ``model.safetensors``, for ``bytelm generate`` / ``eval`` and ``--model``) and
``summary.json``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_only

from longseq.bytes.data.files import SPLITS, BytesDataConfig, list_files, read_bytes, split_files
from longseq.bytes.models import ByteLM
from longseq.core.io import InputError, atomic_output, check_not_overwriting, new_directory
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


def train_on_files(
    data: BytesDataConfig,
    output: str | os.PathLike,
    *,
    model: str,
    trainer: TrainerConfig,
    optimizer: OptimizerConfig,
) -> dict | None:
    """Train ``model`` (a preset or a checkpoint directory) on the files under ``data.path``; return a summary.

    Training windows of ``data.seq_len`` bytes (default and maximum: the model's context - 1) do not overlap and
    are shuffled each epoch. ``trainer.resume`` continues an interrupted run exactly (`core.train.fit`); the
    model has to be of the checkpoint's shape.

    Every input is checked before the output directory is made; the hardware and the checkpoint to resume are
    checked as the trainer starts, and a refusal there removes the directory again.

    Returns:
        steps, bytes, files per split and the last metrics; None in the other processes of a data-parallel run.

    Raises:
        InputError, CheckpointError: a bad input.
    """
    output = Path(output)
    if data.path is None:
        raise InputError("give the training data: --data.path DIR (a directory of files, or one file)")
    check_not_overwriting(output, data.path, model)
    trainer.check_outside(output)
    files = list_files(data.path)
    split = split_files(
        files, data.path, val_fraction=data.val_fraction, test_fraction=data.test_fraction, seed=data.split_seed
    )
    streams = {name: read_bytes(split[name]) for name in ("train", "val")}

    # The initialisation follows the seed (two runs of one command start alike), without the trainer yet.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(trainer.seed)
        net = ByteLM.from_pretrained(model)
    seq_len = net.context - 1 if data.seq_len is None else data.seq_len
    if seq_len > net.context - 1:
        raise InputError(f"--data.seq_len must lie in [1, {net.context - 1}] for this model, got {seq_len}")
    if streams["train"].numel() < seq_len + 1:
        raise InputError(f"the training files hold {streams['train'].numel()} bytes, fewer than one window")
    val = streams["val"] if streams["val"].numel() > seq_len else None
    datamodule = TokenWindowDataModule(
        streams["train"], val, seq_len=seq_len, batch_size=data.batch_size, seed=trainer.seed
    )
    task = ByteLMTask(net, optimizer=optimizer)

    # Data-parallel training runs this function in every process (Lightning starts the others with the same
    # command): the first one owns the output directory.
    if rank_zero_only.rank != 0:
        fit(build_trainer(trainer), task, datamodule, resume=trainer.resume)
        return None
    root = Path(data.path)
    with new_directory(output):
        _write_json(
            output / "split.json",
            {name: [str(p.relative_to(root)) if p != root else p.name for p in split[name]] for name in SPLITS},
        )
        lightning_trainer = build_trainer(trainer)
        fit(lightning_trainer, task, datamodule, resume=trainer.resume)
        net.save_pretrained(output)
        summary = {
            "steps": lightning_trainer.global_step,
            "train_bytes": int(streams["train"].numel()),
            "val_bytes": int(streams["val"].numel()),
            "files": {name: len(split[name]) for name in SPLITS},
            "metrics": {k: float(v) for k, v in lightning_trainer.callback_metrics.items()},
        }
        _write_json(output / "summary.json", summary)
    return summary
