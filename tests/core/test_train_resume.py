"""Kill-and-resume: a restarted run computes exactly the losses an uninterrupted run computes.

The tiny run (train_helpers.tiny_run) has dropout and validates between steps, so the losses only match when
the model, optimizer, schedule, data position and random state all come back.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.core.train_helpers import LossRecorder, tiny_run

HERE = Path(__file__).parent
BATCHES_PER_EPOCH = 10


class Crash(Exception):
    pass


class CrashAt(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Crash


@functools.cache
def uninterrupted_losses(accumulate: int) -> dict:
    recorder = LossRecorder()
    tiny_run(None, callbacks=[recorder], accumulate_grad_batches=accumulate)
    return recorder.losses


def losses_after(batches_done: int, accumulate: int) -> dict:
    losses = uninterrupted_losses(accumulate)
    return {k: v for k, v in losses.items() if k[0] * BATCHES_PER_EPOCH + k[1] >= batches_done}


def resumed_losses(checkpoint_dir: Path, resume: str, **kwargs) -> dict:
    """Resume in a new Trainer, from a model with other initial weights and another global random state."""
    recorder = LossRecorder()
    torch.manual_seed(12345)
    tiny_run(str(checkpoint_dir), callbacks=[recorder], resume=resume, model_seed=7, **kwargs)
    return recorder.losses


@pytest.mark.parametrize(
    ("every", "accumulate"),
    [(4, 1), (10, 1), (3, 2)],
    ids=["mid-epoch", "epoch-end", "accumulate-2"],
)
def test_resume_in_a_new_trainer_gives_the_same_next_losses(tmp_path, every, accumulate):
    settings = {"checkpoint_every_n_steps": every, "accumulate_grad_batches": accumulate}
    with pytest.raises(Crash):
        tiny_run(str(tmp_path), callbacks=[CrashAt(every + 2)], **settings)
    assert (tmp_path / f"step={every}.ckpt").is_file()

    resumed = resumed_losses(tmp_path, str(tmp_path / f"step={every}.ckpt"), **settings)
    expected = losses_after(every * accumulate, accumulate)
    assert sorted(resumed) == sorted(expected)
    assert resumed == expected


def test_resume_after_the_process_is_killed(tmp_path):
    worker = HERE / "train_kill_worker.py"
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent)}
    killed = subprocess.run([sys.executable, str(worker), str(tmp_path), "4", "6"], env=env, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-3000:]
    assert (tmp_path / "last.ckpt").is_file()

    resumed = resumed_losses(tmp_path, "last", checkpoint_every_n_steps=4)
    assert resumed == losses_after(4, 1)
