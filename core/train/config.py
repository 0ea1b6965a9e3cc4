"""The configs every training command exposes as flags (``--trainer.*``, ``--optimizer.*``).

Plain dataclasses, importable without lightning or torch, so that a command-line tool can build its flags (and
answer ``--help``) at once; `longseq.core.train.build_trainer` and `configure_optimizers` turn them into objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from longseq.core.io import InputError


@dataclass(kw_only=True)
class TrainerConfig:
    """How to train: length, hardware, precision, checkpoints, logging."""

    max_steps: int = -1
    """Optimizer steps to train for (-1: bounded by max_epochs)."""
    max_epochs: int | None = None
    """Epochs to train for (None: bounded by max_steps)."""
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | Literal["auto"] = "auto"
    """Devices per node; on the CPU, the number of processes."""
    num_nodes: int = 1
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    """auto: one device; ddp: data parallel (gloo on the CPU, nccl on GPUs); fsdp: sharded, GPUs only."""
    precision: Literal["32-true", "64-true", "16-mixed", "bf16-mixed", "bf16-true"] = "32-true"
    gradient_clip_val: float | None = 1.0
    """Clip the gradient norm to this value (None: no clipping)."""
    accumulate_grad_batches: int = 1
    gradient_checkpointing: bool = False
    """Recompute each block's activations in the backward pass instead of keeping them (less memory at long
    context, about one more forward's time); honoured by the models that support it (HyenaDNA, Caduceus)."""
    val_every_n_batches: int | None = None
    """Validate every n training batches (None: at the end of each epoch)."""
    limit_val_batches: int | float = 1.0
    checkpoint_dir: str | None = None
    """Where to write Lightning checkpoints (``last.ckpt`` and ``step=N.ckpt``); None: no checkpoints."""
    checkpoint_every_n_steps: int | None = None
    """Save a checkpoint every n optimizer steps (None: at the end of each epoch)."""
    keep_all_checkpoints: bool = False
    """Keep every ``step=N.ckpt`` (False: only ``last.ckpt``)."""
    resume: str | None = None
    """Continue a run exactly where it stopped: "last" (``last.ckpt`` in checkpoint_dir, if there is one yet)
    or the path of a ``.ckpt`` file. None: start fresh."""
    logger: Literal["csv", "tensorboard", "none"] = "csv"
    log_dir: str = "runs"
    """Logs go to ``<log_dir>/<run_name>/version_<k>/``."""
    run_name: str = "train"
    log_every_n_steps: int = 10
    progress_bar: bool | None = None
    """Show a progress bar (None: only when stderr is a terminal; otherwise one line per log_every_n_steps)."""
    seed: int = 0

    def __post_init__(self):
        if self.max_steps == -1 and self.max_epochs is None:
            raise ValueError("set max_steps or max_epochs")
        if self.max_steps < -1 or self.max_steps == 0:
            raise ValueError(f"max_steps must be positive (or -1), got {self.max_steps}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ValueError(f"max_epochs must be positive, got {self.max_epochs}")
        if self.devices != "auto" and self.devices < 1:
            raise ValueError(f"devices must be positive or 'auto', got {self.devices}")
        if self.strategy == "fsdp" and self.accelerator in ("cpu", "mps"):
            raise ValueError("fsdp runs on CUDA GPUs only (Lightning's FSDP strategy); use strategy='ddp' on the CPU")
        if self.gradient_clip_val is not None and self.gradient_clip_val <= 0:
            raise ValueError(f"gradient_clip_val must be positive or None, got {self.gradient_clip_val}")
        for name in ("accumulate_grad_batches", "num_nodes", "log_every_n_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("val_every_n_batches", "checkpoint_every_n_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {getattr(self, name)}")
        if self.checkpoint_every_n_steps is not None and self.checkpoint_dir is None:
            raise ValueError("checkpoint_every_n_steps needs a checkpoint_dir")
        if self.resume == "last" and self.checkpoint_dir is None:
            raise ValueError("resume='last' needs a checkpoint_dir")
        if self.resume not in (None, "last") and not Path(self.resume).is_file():
            raise ValueError(f"resume: no checkpoint file {self.resume} (give 'last' or a .ckpt path)")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def check_outside(self, output: str | os.PathLike) -> None:
        """Refuse checkpoints or logs inside a command's output directory: a run that fails removes its output,
        and the checkpoints are what resumes it."""
        for name in ("checkpoint_dir", "log_dir"):
            value = getattr(self, name)
            if value is not None and Path(value).resolve().is_relative_to(Path(output).resolve()):
                raise InputError(f"--trainer.{name} {value} lies inside --output {output}; keep it beside the output")


@dataclass(kw_only=True)
class OptimizerConfig:
    """AdamW and its learning-rate schedule."""

    lr: float = 1e-3
    """Peak learning rate, reached at the end of the warm-up."""
    weight_decay: float = 0.1
    """Decoupled weight decay for the parameters that decay (see `param_groups`)."""
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int = 0
    """Optimizer steps of linear warm-up from lr / warmup_steps to lr."""
    min_lr_ratio: float = 0.1
    """The cosine decays from lr to lr * min_lr_ratio at the last step."""

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
