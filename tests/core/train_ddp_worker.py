"""Train TinyLM for a few steps with DDP on two CPU processes (gloo); run by tests/core/test_train_ddp.py.

    python tests/core/train_ddp_worker.py OUT_DIR

Lightning starts the second process by running this script again. Each rank writes its initial and final
parameters and the token ids of its first batch to OUT_DIR/rank<r>.safetensors.
"""

from __future__ import annotations

import sys

import lightning as L
import torch
from safetensors.torch import save_file

from longseq.core.train import CausalLMTask, OptimizerConfig, TokenWindowDataModule, TrainerConfig, build_trainer, fit
from tests.core.train_helpers import TinyLM, periodic_tokens


class FirstBatch(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0:
            self.input_ids = batch[0].clone()


def main(out_dir: str) -> None:
    tokens = periodic_tokens(64 * 8 + 1)
    config = TrainerConfig(
        max_steps=4, accelerator="cpu", devices=2, strategy="ddp", logger="none", progress_bar=False, seed=3
    )
    first = FirstBatch()
    trainer = build_trainer(config, callbacks=[first])
    task = CausalLMTask(TinyLM(dropout=0.0), optimizer=OptimizerConfig(lr=1e-2))
    tensors = {f"init.{k}": v.detach().clone() for k, v in task.model.state_dict().items()}
    fit(trainer, task, TokenWindowDataModule(tokens, seq_len=8, batch_size=4))
    tensors.update({f"final.{k}": v.detach().contiguous() for k, v in task.model.state_dict().items()})
    tensors["first_input_ids"] = first.input_ids
    tensors["world_size"] = torch.tensor(trainer.world_size)
    save_file(tensors, f"{out_dir}/rank{trainer.global_rank}.safetensors")


if __name__ == "__main__":
    main(sys.argv[1])
