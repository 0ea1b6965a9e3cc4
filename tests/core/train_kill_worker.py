"""Run `tiny_run` with a checkpoint every CKPT_EVERY steps and SIGKILL this process at step KILL_AT;
run by tests/core/test_train_resume.py.

    python tests/core/train_kill_worker.py CKPT_DIR CKPT_EVERY KILL_AT
"""

from __future__ import annotations

import os
import signal
import sys

import lightning as L
import torch

from tests.core.train_helpers import tiny_run


class KillAt(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # as tests/conftest.py, so the arithmetic is the same
    checkpoint_dir, every, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    tiny_run(checkpoint_dir, checkpoint_every_n_steps=every, callbacks=[KillAt(kill_at)])
