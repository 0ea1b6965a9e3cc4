"""Data-parallel training on two CPU processes (gloo), and what can be checked of FSDP without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.strategies import FSDPStrategy
from safetensors.torch import load_file

from longseq.core.block import Block
from longseq.core.train import TrainerConfig, build_trainer
from longseq.core.train.trainer import lightning_strategy

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def test_ddp_two_cpu_processes_keep_the_ranks_in_step(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    worker = HERE / "train_ddp_worker.py"
    done = subprocess.run([sys.executable, str(worker), str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    assert all(int(r["world_size"]) == 2 for r in ranks)
    # The ranks trained on different shards of the data ...
    assert not torch.equal(ranks[0]["first_input_ids"], ranks[1]["first_input_ids"])
    names = [k for k in ranks[0] if k.startswith("final.")]
    assert names
    # ... and still hold the same parameters after four steps: the gradients were averaged across them.
    for name in names:
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0, msg=name)
    moved = [n for n in names if not torch.equal(ranks[0][n], ranks[0]["init." + n[len("final.") :]])]
    assert len(moved) == len(names)


def test_fsdp_is_refused_on_the_cpu_with_a_clear_message():
    with pytest.raises(ValueError, match="fsdp runs on CUDA GPUs only"):
        TrainerConfig(max_steps=1, strategy="fsdp", accelerator="cpu")


def test_fsdp_strategy_shards_each_block():
    strategy = lightning_strategy(TrainerConfig(max_steps=1, strategy="fsdp"))
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {Block}
    assert lightning_strategy(TrainerConfig(max_steps=1, strategy="ddp")) == "ddp"


@pytest.mark.gpu
def test_fsdp_trains_on_a_gpu(tmp_path):
    from longseq.core.train import CausalLMTask, OptimizerConfig, TokenWindowDataModule, fit
    from tests.core.train_helpers import TinyLM, periodic_tokens

    config = TrainerConfig(max_steps=3, strategy="fsdp", devices=1, logger="none", progress_bar=False)
    trainer = build_trainer(config)
    task = CausalLMTask(TinyLM(dropout=0.0), optimizer=OptimizerConfig(lr=1e-2))
    fit(trainer, task, TokenWindowDataModule(periodic_tokens(400), seq_len=8, batch_size=4))
    assert trainer.global_step == 3
    assert isinstance(trainer.strategy, FSDPStrategy)
    assert trainer.strategy.kwargs["auto_wrap_policy"]._module_classes == {Block}
