"""Shared training pieces (the only place in `core` that imports lightning).

    trainer = build_trainer(TrainerConfig(max_steps=1000, checkpoint_dir="ckpt", checkpoint_every_n_steps=100))
    task = CausalLMTask(model, optimizer=OptimizerConfig(lr=1e-3, warmup_steps=100))
    fit(trainer, task, TokenWindowDataModule(tokens, seq_len=1024, batch_size=8), resume="last")

A domain task subclasses `CausalLMTask` or writes its own LightningModule whose ``configure_optimizers``
returns `configure_optimizers(model, config, self.trainer.estimated_stepping_batches)`; a domain datamodule
serves training batches through `ResumableDataLoader` so that a restart continues exactly where it stopped.
"""

from longseq.core.train.causal_lm import CausalLMTask
from longseq.core.train.data import TokenWindowDataModule, TokenWindows
from longseq.core.train.optim import OptimizerConfig, configure_optimizers, cosine_with_warmup, decays, param_groups
from longseq.core.train.resume import ResumableDataLoader, ResumableSampler, StepSeed
from longseq.core.train.trainer import ProgressLines, TrainerConfig, build_trainer, fit

__all__ = [
    "CausalLMTask",
    "OptimizerConfig",
    "ProgressLines",
    "ResumableDataLoader",
    "ResumableSampler",
    "StepSeed",
    "TokenWindowDataModule",
    "TokenWindows",
    "TrainerConfig",
    "build_trainer",
    "configure_optimizers",
    "cosine_with_warmup",
    "decays",
    "param_groups",
    "fit",
]
