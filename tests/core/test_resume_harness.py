"""The resume harness (tests/resume_harness.py) on a small training command built like the real ones: it
passes when resume works and fails when the checkpoint is silently dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import longseq
from longseq.core import train as core_train
from longseq.core.cli import run
from longseq.core.train import CausalLMTask, OptimizerConfig, TokenWindowDataModule, TrainerConfig, build_trainer
from tests.resume_harness import check_resume


def train(
    output: Path,
    *,
    model: str = "mamba-tiny",
    trainer: TrainerConfig = TrainerConfig(max_steps=6),  # noqa: B008  (a dataclass default: jsonargparse's groups)
    optimizer: OptimizerConfig = OptimizerConfig(lr=3e-3),  # noqa: B008
) -> None:
    """Train a causal LM on random tokens.

    Args:
        output: where the trained model goes.
        model: a preset or a checkpoint directory to start from.
        trainer: how long, checkpoints, resume.
        optimizer: AdamW and its schedule.
    """
    tokens = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
    lightning_trainer = build_trainer(trainer)  # seeds everything first, so a fresh model is the same each run
    net = longseq.from_pretrained(model).train()
    task = CausalLMTask(net, optimizer=optimizer)
    data = TokenWindowDataModule(tokens, seq_len=32, batch_size=4, seed=trainer.seed)
    core_train.fit(lightning_trainer, task, data, resume=trainer.resume)
    net.save_pretrained(output)


def main(argv: list[str]) -> int:
    return run({"train": train}, argv, "toy")


def command(output: Path, steps: int) -> list[str]:
    return ["train", "--output", output, "--trainer.max_steps", steps, "--trainer.progress_bar", "false"]


def start_from(output: Path) -> list[str]:
    return ["--model", output]


def test_the_harness_passes_an_exact_resume(tmp_path, monkeypatch):
    check_resume(main, command, start_from, tmp_path, monkeypatch)


def test_the_harness_fails_when_resume_is_ignored(tmp_path, monkeypatch):
    real_fit = core_train.fit
    monkeypatch.setattr(core_train, "fit", lambda trainer, task, data, resume=None: real_fit(trainer, task, data))
    with pytest.raises(AssertionError, match="did not continue"):
        check_resume(main, command, start_from, tmp_path, monkeypatch)
