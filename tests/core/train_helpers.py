"""A tiny causal LM and a tiny training run for the training tests (used in-process and by worker scripts).

TinyLM has every kind of parameter the optimizer groups tell apart: 2-D and 3-D weights, biases, a norm weight,
and a 2-D parameter marked ``_no_weight_decay`` (like an SSM's ``A_log``); and dropout, so that a resumed run
only matches when the random state is restored.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.norm import RMSNorm
from longseq.core.train import CausalLMTask, OptimizerConfig, TokenWindowDataModule, TrainerConfig, build_trainer, fit


class TinyLM(nn.Module):
    def __init__(self, *, vocab_size: int = 8, d_model: int = 16, width: int = 4, dropout: float = 0.1):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.conv = nn.Conv1d(d_model, d_model, width, groups=d_model, padding=width - 1)
        self.A_log = nn.Parameter(torch.zeros(d_model, 2))
        self.A_log._no_weight_decay = True
        self.proj = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)
        self.norm = RMSNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (b, l) -> logits (b, l, v)."""
        x = self.embedding(input_ids)
        l = x.shape[1]
        h = self.conv(x.transpose(1, 2))[..., :l].transpose(1, 2)
        h = h * torch.exp(self.A_log).sum(-1)
        x = x + self.drop(self.proj(F.silu(h)))
        return self.head(self.norm(x))


def periodic_tokens(n: int, *, vocab_size: int = 8, seed: int = 0) -> torch.Tensor:
    """(n,) tokens of a noisy repeating pattern: learnable, so the loss falls within a few steps."""
    generator = torch.Generator().manual_seed(seed)
    pattern = torch.randint(vocab_size, (7,), generator=generator)
    tokens = pattern.repeat(n // 7 + 1)[:n].clone()
    noise = torch.rand(n, generator=generator) < 0.05
    tokens[noise] = torch.randint(vocab_size, (int(noise.sum()),), generator=generator)
    return tokens


class LossRecorder(L.Callback):
    """Records the loss of every training batch, keyed by (epoch, batch index)."""

    def __init__(self):
        self.losses: dict[tuple[int, int], float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[(trainer.current_epoch, batch_idx)] = outputs["loss"].item()


def tiny_run(
    checkpoint_dir: str | None = None,
    *,
    callbacks: list[L.Callback] = (),
    resume: str | None = None,
    checkpoint_every_n_steps: int | None = None,
    accumulate_grad_batches: int = 1,
    max_steps: int = 14,
    model_seed: int = 0,
) -> CausalLMTask:
    """14 steps of TinyLM (dropout on) on 10 batches per epoch, validating every 3 batches (which draws random
    numbers between steps). ``model_seed`` sets the initial weights, which a resumed run must not depend on."""
    tokens = periodic_tokens(41 * 8 + 1)  # 41 windows of 8 tokens: 10 batches of 4 per epoch
    datamodule = TokenWindowDataModule(tokens, tokens[:72], seq_len=8, batch_size=4)  # 2 validation batches
    config = TrainerConfig(
        max_steps=max_steps,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every_n_steps=checkpoint_every_n_steps,
        keep_all_checkpoints=True,
        accumulate_grad_batches=accumulate_grad_batches,
        val_every_n_batches=3,
        logger="none",
        progress_bar=False,
    )
    trainer = build_trainer(config, callbacks=list(callbacks))
    torch.manual_seed(model_seed)
    task = CausalLMTask(TinyLM(dropout=0.3), optimizer=OptimizerConfig(lr=1e-2, warmup_steps=3))
    fit(trainer, task, datamodule, resume=resume)
    return task
