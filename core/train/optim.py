"""AdamW with weight-decay groups and a cosine schedule with linear warm-up, stepped once per optimizer step.

No weight decay goes to parameters marked ``param._no_weight_decay = True`` where they are created (SSM
``A_log`` and ``D``, Hyena filter parameters: mamba_ssm's convention), nor to biases and norm weights, which
are the parameters with fewer than two dimensions (as in nanoGPT and timm).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from longseq.core.train.config import OptimizerConfig


def decays(param: nn.Parameter) -> bool:
    """Whether a parameter gets weight decay: not marked ``_no_weight_decay``, and at least two-dimensional."""
    return not getattr(param, "_no_weight_decay", False) and param.ndim >= 2


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decaying weights, and everything else with ``weight_decay=0``.

    Frozen parameters (``requires_grad=False``) are left out; tied parameters appear once.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if decays(param) else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def cosine_with_warmup(step: int, *, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """The learning-rate multiplier for optimizer step ``step`` (0-based).

    Warm-up: (step + 1) / warmup_steps for step < warmup_steps (the first step already trains). Then a cosine
    from 1 at step = warmup_steps to min_lr_ratio at step = total_steps - 1, constant afterwards.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = total_steps - 1 - warmup_steps
    progress = 1.0 if decay_steps <= 0 else min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def configure_optimizers(model: nn.Module, config: OptimizerConfig, total_steps: int | float) -> dict:
    """AdamW over `param_groups` and the per-step cosine schedule, in Lightning's ``configure_optimizers`` form.

    A task returns this from its ``configure_optimizers``, with ``total_steps=self.trainer.estimated_stepping_batches``.
    """
    if not math.isfinite(total_steps) or total_steps < 1:
        raise ValueError(f"the schedule needs a finite number of steps (set max_steps), got {total_steps}")
    optimizer = torch.optim.AdamW(
        param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas, eps=config.eps
    )
    schedule = functools.partial(
        cosine_with_warmup,
        warmup_steps=config.warmup_steps,
        total_steps=int(total_steps),
        min_lr_ratio=config.min_lr_ratio,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}
