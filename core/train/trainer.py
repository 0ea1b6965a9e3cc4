"""The trainer factory: one `TrainerConfig` (a plain dataclass, so CLIs expose it as ``--trainer.*`` flags)
becomes a `lightning.Trainer` with checkpoints, logging, progress and exact-resume seeding wired in.

Lightning's own info lines (the hardware it found, tips) and its model summary are off: a command that
refuses its input after building the trainer must still say so in one line. Progress and resume notes go to
the ``longseq.train`` logger (stderr); Lightning's warnings still show.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from longseq.core.block import Block
from longseq.core.checkpoint import CheckpointError, check_state_dict, load_pickle
from longseq.core.io import InputError
from longseq.core.train.config import TrainerConfig
from longseq.core.train.resume import StepSeed

log = logging.getLogger("longseq.train")


@rank_zero_only
def note(message: str) -> None:
    """A progress line on stderr, from the first process only."""
    if not log.handlers:
        log.addHandler(logging.StreamHandler(sys.stderr))
        log.setLevel(logging.INFO)
    log.info(message)


class ProgressLines(L.Callback):
    """One line per ``every`` optimizer steps with the logged metrics: progress for logs that are not terminals."""

    def __init__(self, every: int):
        self.every = every
        self._last = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step == self._last or (step % self.every and step != trainer.max_steps):
            return
        self._last = step
        metrics = " ".join(f"{k} {float(v):.4g}" for k, v in trainer.progress_bar_metrics.items())
        total = f"/{trainer.max_steps}" if trainer.max_steps > 0 else ""
        note(f"step {step}{total} epoch {trainer.current_epoch} {metrics}")


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_predictor(
    *, accelerator: str, devices: int = 1, num_nodes: int = 1, strategy: str = "ddp", **options
) -> L.Trainer:
    """A `lightning.Trainer` for the predict loop of an inference command spread over ``devices`` x ``num_nodes``
    processes (``strategy`` when there are several), with no logger, checkpoints or model summary. ``options`` go
    to the Trainer as they are (a progress bar, the sampler). One process is quiet like `build_trainer`; several
    keep Lightning's lines that name each process, the user's sign that they all joined."""
    if devices * num_nodes == 1:
        _quiet_lightning()
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy if devices * num_nodes > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        **options,
    )


def build_trainer(config: TrainerConfig, *, callbacks: list[L.Callback] | None = None) -> L.Trainer:
    """A `lightning.Trainer` for ``config``; ``callbacks`` are added to the ones the config asks for."""
    _quiet_lightning()
    L.seed_everything(config.seed, workers=True, verbose=False)
    callbacks = [*(callbacks or []), StepSeed(config.seed)]
    if config.checkpoint_dir is not None:
        callbacks.append(
            ModelCheckpoint(
                dirpath=config.checkpoint_dir,
                filename="step={step}",
                auto_insert_metric_name=False,
                every_n_train_steps=config.checkpoint_every_n_steps,
                save_top_k=-1 if config.keep_all_checkpoints else 0,
                save_last=True,
            )
        )
    logger = _logger(config)
    if logger is not None:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    progress_bar = sys.stderr.isatty() if config.progress_bar is None else config.progress_bar
    if not progress_bar:
        callbacks.append(ProgressLines(config.log_every_n_steps))

    try:
        return L.Trainer(
            max_steps=config.max_steps,
            max_epochs=config.max_epochs,
            # Lightning accepts FSDP only with an explicit GPU accelerator.
            accelerator="cuda" if config.strategy == "fsdp" and config.accelerator == "auto" else config.accelerator,
            devices=config.devices,
            num_nodes=config.num_nodes,
            strategy=lightning_strategy(config),
            precision=config.precision,
            gradient_clip_val=config.gradient_clip_val,
            accumulate_grad_batches=config.accumulate_grad_batches,
            val_check_interval=config.val_every_n_batches,
            check_val_every_n_epoch=None if config.val_every_n_batches else 1,
            limit_val_batches=config.limit_val_batches,
            # A command may add its own ModelCheckpoint (dna finetune keeps its best weights) without checkpoint_dir.
            enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
            logger=logger if logger is not None else False,
            log_every_n_steps=config.log_every_n_steps,
            enable_progress_bar=progress_bar,
            enable_model_summary=False,  # commands say their model's size in their own words
            callbacks=callbacks,
            default_root_dir=config.log_dir,
        )
    except MisconfigurationException as err:  # e.g. accelerator="cuda" on a machine without CUDA
        raise InputError(f"--trainer: {err}") from None


def lightning_strategy(config: TrainerConfig) -> str | FSDPStrategy:
    """Lightning's strategy argument. DDP picks gloo on the CPU and nccl on GPUs; FSDP shards each `Block`.

    FSDP cannot run on the CPU: Lightning refuses it there, and so does torch's FSDP ("needs a non-CPU
    accelerator device"). CPU users who outgrow one process use DDP.
    """
    if config.strategy == "fsdp":
        return FSDPStrategy(auto_wrap_policy={Block})
    return config.strategy


def _logger(config: TrainerConfig):
    if config.logger == "csv":
        return CSVLogger(save_dir=config.log_dir, name=config.run_name)
    if config.logger == "tensorboard":
        return TensorBoardLogger(save_dir=config.log_dir, name=config.run_name)
    return None


def fit(
    trainer: L.Trainer,
    task: L.LightningModule,
    datamodule: L.LightningDataModule | None = None,
    *,
    resume: str | os.PathLike | None = None,
) -> None:
    """``trainer.fit`` in train mode, optionally resuming exactly from a checkpoint.

    Args:
        resume: `TrainerConfig.resume`: None (start fresh), ``"last"`` (``last.ckpt`` in the checkpoint dir if
            it is there, else start fresh) or the path of a ``.ckpt`` file.

    Raises:
        InputError: ``resume="last"`` without a checkpoint dir.
        CheckpointError: the checkpoint is missing, corrupt, unsafe, not a training checkpoint, or one of another
            model.
    """
    if resume is not None and str(resume) == "last":
        if trainer.checkpoint_callback is None:
            raise InputError("resume='last' needs a checkpoint_dir in the TrainerConfig")
        last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
        resume = last if last.is_file() else None
        if resume is None:
            note(f"no {last} yet: starting from scratch")
    if resume is not None:
        state = load_pickle(resume)
        if not isinstance(state, dict) or "state_dict" not in state or "loops" not in state:
            raise CheckpointError(f"{resume} is not a training checkpoint (no state_dict and loop state)")
        check_state_dict(task, state["state_dict"], str(resume))  # a run of another model: one line, not Lightning's
        note(f"resuming from {resume}")
    ckpt_path = None if resume is None else str(resume)
    task.train()  # Lightning keeps the mode a module arrives in, and loaded models arrive in eval mode
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
