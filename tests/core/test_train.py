"""The trainer factory, the next-token task, token windows and the resumable data loader."""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
from torch.utils.data import IterableDataset

from longseq.core.checkpoint import CheckpointError, load_pickle
from longseq.core.io import InputError
from longseq.core.train import (
    CausalLMTask,
    OptimizerConfig,
    ResumableDataLoader,
    TokenWindowDataModule,
    TokenWindows,
    TrainerConfig,
    build_trainer,
    fit,
)
from tests.core.train_helpers import LossRecorder, TinyLM, periodic_tokens, tiny_run


def test_a_tiny_lm_trains_and_its_loss_falls(tmp_path):
    recorder = LossRecorder()
    task = tiny_run(str(tmp_path), callbacks=[recorder], max_steps=20)
    losses = [recorder.losses[k] for k in sorted(recorder.losses)]
    assert len(losses) == 20
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0]
    assert task.trainer.global_step == 20
    assert (tmp_path / "last.ckpt").is_file()


@pytest.mark.parametrize("logger", ["csv", "tensorboard"])
def test_logs_and_progress_lines(tmp_path, logger, caplog):
    config = TrainerConfig(
        max_steps=4, logger=logger, log_dir=str(tmp_path), run_name="run", log_every_n_steps=2, progress_bar=False
    )
    trainer = build_trainer(config)
    task = CausalLMTask(TinyLM(), optimizer=OptimizerConfig(lr=1e-2))
    with caplog.at_level(logging.INFO):
        fit(trainer, task, TokenWindowDataModule(periodic_tokens(200), seq_len=8, batch_size=4))
    files = [p.name for p in (tmp_path / "run" / "version_0").iterdir()]
    if logger == "csv":
        header = (tmp_path / "run" / "version_0" / "metrics.csv").read_text().splitlines()[0]
        assert "train/loss" in header and "lr-AdamW/pg1" in header
    else:
        assert any(name.startswith("events.out.tfevents") for name in files)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]
    assert all("train/loss" in line for line in lines)


def test_only_the_last_checkpoint_is_kept_unless_asked(tmp_path):
    class CrashAt5(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 5:
                raise KeyError("crash")

    config = TrainerConfig(
        max_steps=9, checkpoint_dir=str(tmp_path), checkpoint_every_n_steps=2, logger="none", progress_bar=False
    )
    data = TokenWindowDataModule(periodic_tokens(300), seq_len=8, batch_size=4)
    with pytest.raises(KeyError, match="crash"):
        fit(build_trainer(config, callbacks=[CrashAt5()]), CausalLMTask(TinyLM()), data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert load_pickle(tmp_path / "last.ckpt")["global_step"] == 4


def test_resume_from_a_bad_file_is_a_one_line_error(tmp_path):
    trainer = build_trainer(TrainerConfig(max_steps=2, logger="none", progress_bar=False))
    task = CausalLMTask(TinyLM())
    data = TokenWindowDataModule(periodic_tokens(200), seq_len=8, batch_size=4)
    with pytest.raises(CheckpointError, match="not found"):
        fit(trainer, task, data, resume=tmp_path / "missing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(b"PK\x03\x04 not a whole file")
    with pytest.raises(CheckpointError, match="cannot read"):
        fit(trainer, task, data, resume=truncated)
    weights_only = tmp_path / "weights.pt"
    torch.save(TinyLM().state_dict(), weights_only)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        fit(trainer, task, data, resume=weights_only)
    assert trainer.global_step == 0


def test_resume_last_needs_a_checkpoint_dir_and_starts_fresh_without_a_checkpoint(tmp_path):
    data = TokenWindowDataModule(periodic_tokens(200), seq_len=8, batch_size=4)
    without_dir = build_trainer(TrainerConfig(max_steps=2, logger="none", progress_bar=False))
    with pytest.raises(InputError, match="needs a checkpoint_dir"):
        fit(without_dir, CausalLMTask(TinyLM()), data, resume="last")
    config = TrainerConfig(max_steps=2, checkpoint_dir=str(tmp_path), logger="none", progress_bar=False)
    trainer = build_trainer(config)
    fit(trainer, CausalLMTask(TinyLM()), data, resume="last")
    assert trainer.global_step == 2
    (tmp_path / "last.ckpt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        fit(build_trainer(config), CausalLMTask(TinyLM()), data, resume="last")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "set max_steps or max_epochs"),
        ({"max_steps": 0}, "max_steps must be positive"),
        ({"max_epochs": 0}, "max_epochs must be positive"),
        ({"max_steps": 5, "devices": 0}, "devices"),
        ({"max_steps": 5, "gradient_clip_val": 0.0}, "gradient_clip_val"),
        ({"max_steps": 5, "accumulate_grad_batches": 0}, "accumulate_grad_batches"),
        ({"max_steps": 5, "val_every_n_batches": 0}, "val_every_n_batches"),
        ({"max_steps": 5, "checkpoint_every_n_steps": 10}, "needs a checkpoint_dir"),
        ({"max_steps": 5, "seed": -1}, "seed"),
        ({"max_steps": 5, "resume": "last"}, "resume='last' needs a checkpoint_dir"),
        ({"max_steps": 5, "resume": "no/such.ckpt"}, "no checkpoint file no/such.ckpt"),
        ({"max_steps": 5, "num_nodes": 0}, "num_nodes"),
        ({"max_steps": 5, "log_every_n_steps": 0}, "log_every_n_steps"),
    ],
)
def test_bad_trainer_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainerConfig(**kwargs)


def test_hardware_the_machine_lacks_is_bad_input():
    with pytest.raises(InputError, match="--trainer: .*MPSAccelerator.* can not run on your system"):
        build_trainer(TrainerConfig(max_steps=2, accelerator="mps", logger="none"))


def test_token_windows_pair_each_token_with_the_next():
    tokens = torch.arange(20)
    windows = TokenWindows(tokens, seq_len=5, stride=3)
    assert len(windows) == 5  # starts 0, 3, 6, 9, 12 (12 + 5 + 1 = 18 <= 20)
    inputs, targets = windows[4]
    assert inputs.tolist() == [12, 13, 14, 15, 16] and targets.tolist() == [13, 14, 15, 16, 17]
    assert len(TokenWindows(tokens, seq_len=19)) == 1
    with pytest.raises(IndexError):
        windows[5]


@pytest.mark.parametrize(
    ("tokens", "kwargs", "message"),
    [
        (torch.zeros(2, 10), {"seq_len": 4}, "one sequence"),
        (torch.zeros(5), {"seq_len": 5}, "too few"),
        (torch.zeros(50), {"seq_len": 0}, "positive"),
    ],
)
def test_bad_token_windows_are_input_errors(tokens, kwargs, message):
    with pytest.raises(InputError, match=message):
        TokenWindows(tokens, **kwargs)


def test_a_datamodule_with_fewer_windows_than_a_batch_is_an_input_error():
    with pytest.raises(InputError, match="fewer than one batch"):
        TokenWindowDataModule(torch.zeros(40), seq_len=8, batch_size=8)


def batches(loader) -> list[list[int]]:
    return [inputs[:, 0].tolist() for inputs, _ in loader]


def test_the_loader_resumes_inside_an_epoch_without_loading_anything_twice():
    windows = TokenWindows(torch.arange(200), seq_len=4, stride=5)  # item i starts with token 5 i
    loader = ResumableDataLoader(windows, batch_size=3, seed=1)
    loader.sampler.set_epoch(2)
    full = batches(loader)
    assert len(full) == len(loader) == 13  # 40 items in batches of 3; the incomplete last batch is dropped
    iterator = iter(loader)
    [next(iterator) for _ in range(5)]
    state = loader.state_dict()
    assert state == {"batches": 5}

    restarted = ResumableDataLoader(windows, batch_size=3, seed=1)
    restarted.sampler.set_epoch(2)
    restarted.load_state_dict(state)
    assert batches(restarted) == full[5:]
    assert batches(restarted) == full  # the next epoch starts from the beginning again
    restarted.sampler.set_epoch(3)
    assert batches(restarted) != full


def test_a_state_saved_at_the_end_of_an_epoch_resumes_at_the_next_one():
    loader = ResumableDataLoader(TokenWindows(torch.arange(100), seq_len=4), batch_size=4)
    full = batches(loader)
    loader.load_state_dict({"batches": len(full)})
    assert batches(loader) == full


def test_ranks_get_disjoint_shards():
    windows = TokenWindows(torch.arange(200), seq_len=4, stride=5)
    shards = [batches(ResumableDataLoader(windows, batch_size=2, num_replicas=2, rank=r)) for r in (0, 1)]
    seen = [{t for batch in shard for t in batch} for shard in shards]
    assert len(shards[0]) == len(shards[1]) == 10  # 40 items, 20 per rank
    assert not seen[0] & seen[1]


def test_iterable_datasets_are_refused():
    class Stream(IterableDataset):
        def __iter__(self):
            yield from range(3)

    with pytest.raises(TypeError, match="map-style"):
        ResumableDataLoader(Stream(), batch_size=2)
