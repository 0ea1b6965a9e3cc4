"""Shared training pieces (the only place in `core` that imports lightning).

    trainer = build_trainer(TrainerConfig(max_steps=1000, checkpoint_dir="ckpt", checkpoint_every_n_steps=100))
    task = CausalLMTask(model, optimizer=OptimizerConfig(lr=1e-3, warmup_steps=100))
    fit(trainer, task, TokenWindowDataModule(tokens, seq_len=1024, batch_size=8), resume="last")

A domain task subclasses `CausalLMTask` or writes its own LightningModule whose ``configure_optimizers``
returns `configure_optimizers(model, config, self.trainer.estimated_stepping_batches)`; a domain datamodule
serves training batches through `ResumableDataLoader` so that a restart continues exactly where it stopped.

The two configs import eagerly and without lightning (the command-line tools build their flags from them and
answer ``--help`` at once); every other name imports its module, and lightning, on first use.
"""

import importlib

from longseq.core.train.config import OptimizerConfig, TrainerConfig

# name -> the module of this package that defines it
_LAZY = {
    "CausalLMTask": "causal_lm",
    "TokenWindowDataModule": "data",
    "TokenWindows": "data",
    "configure_optimizers": "optim",
    "cosine_with_warmup": "optim",
    "decays": "optim",
    "param_groups": "optim",
    "ResumableDataLoader": "resume",
    "ResumableSampler": "resume",
    "StepSeed": "resume",
    "ProgressLines": "trainer",
    "build_predictor": "trainer",
    "build_trainer": "trainer",
    "fit": "trainer",
}

__all__ = ["OptimizerConfig", "TrainerConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
