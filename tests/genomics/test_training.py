"""Pretraining and fine-tuning: masking, warm-up, learning, exact resume, the CLIs and their bad input."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from longseq.core.registry import from_pretrained
from longseq.core.train import OptimizerConfig, TokenWindowDataModule, TrainerConfig, build_trainer, fit
from longseq.genomics.cli import main
from longseq.genomics.data.tables import LabelledSequences
from longseq.genomics.data.tokenizer import MASK, PAD, DNATokenizer
from longseq.genomics.models.classifier import SequenceClassifier
from longseq.genomics.tasks.finetune import ClassificationTask, LabelledDataModule, LabelledDataset
from longseq.genomics.tasks.pretrain import PretrainTask, mask_tokens, warmup_length

RNG = np.random.default_rng(0)


def random_dna(n: int) -> str:
    return "".join(RNG.choice(list("ACGT"), n))


def test_masking_follows_the_80_10_10_recipe():
    ids = torch.randint(7, 11, (64, 512))
    ids[:, :8] = 11  # N is never a target
    ids[:, 8] = 1  # nor is a special token
    inputs, targets = mask_tokens(ids)
    selected = targets != PAD
    assert not selected[:, :9].any()
    assert selected.float().mean().item() == pytest.approx(0.15 * 503 / 512, abs=0.01)
    assert torch.equal(targets[selected], ids[selected])
    assert (inputs[selected] == MASK).float().mean().item() == pytest.approx(0.8, abs=0.03)
    unchanged = (inputs[selected] == ids[selected]).float().mean().item()
    assert unchanged == pytest.approx(0.1 + 0.1 / 12, abs=0.03)  # kept, plus random draws that hit the same id
    assert torch.equal(inputs[~selected & (ids != 11)], ids[~selected & (ids != 11)])
    assert (inputs[:, :8] == PAD).all()


def test_sequence_length_warmup_doubles_per_stage():
    lengths = [warmup_length(s, seq_len=1024, start=64, stage_steps=10) for s in (0, 9, 10, 25, 40, 1000)]
    assert lengths == [64, 64, 128, 256, 1024, 1024]
    assert warmup_length(5, seq_len=1024, start=None, stage_steps=10) == 1024


GENOME = torch.from_numpy(DNATokenizer().encode(random_dna(3000)))


class Crash(Exception):
    pass


class CrashAt(L.Callback):
    """Stop a run the hard way (an exception) before step ``step``; the checkpoint of that step is on disk."""

    def __init__(self, step: int | None):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Crash


def run_training(task, data, directory: Path, *, steps: int, crash_at: int | None = None, resume: bool = False):
    config = TrainerConfig(
        max_steps=steps, checkpoint_dir=str(directory), checkpoint_every_n_steps=2, logger="none", progress_bar=False
    )
    trainer = build_trainer(config, callbacks=[CrashAt(crash_at)])
    if crash_at is None:
        fit(trainer, task, data, resume="last" if resume else None)
        return
    with pytest.raises(Crash):
        fit(trainer, task, data)


def train_pretrain(model, directory: Path, *, steps: int, crash_at: int | None = None, resume: bool = False, **task):
    data = TokenWindowDataModule(GENOME, seq_len=64, batch_size=4, seed=1)
    task = PretrainTask(model, optimizer=OptimizerConfig(lr=3e-3), **task)
    run_training(task, data, directory, steps=steps, crash_at=crash_at, resume=resume)
    return model


@pytest.mark.parametrize(
    ("preset", "task"),
    [
        pytest.param("caduceus-ph-test", {"objective": "mlm", "rc_augment": True}, marks=pytest.mark.slow),
        ("hyenadna-test", {"objective": "causal", "rc_augment": True, "warmup_start": 16, "warmup_stage_steps": 2}),
    ],
)
def test_pretraining_resumes_exactly(tmp_path, preset, task):
    torch.manual_seed(0)
    start = from_pretrained(preset, embed_dropout=0.1) if preset.startswith("hyena") else from_pretrained(preset)
    whole = train_pretrain(_copy(start), tmp_path / "a", steps=6, **task)
    part = train_pretrain(_copy(start), tmp_path / "b", steps=6, crash_at=4, **task)
    assert not all(torch.equal(p, q) for p, q in zip(part.parameters(), whole.parameters()))
    resumed = train_pretrain(_copy(start), tmp_path / "b", steps=6, resume=True, **task)
    for p, q in zip(resumed.parameters(), whole.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6)


def _copy(model):
    clone = type(model)(model.config)
    clone.load_state_dict(model.state_dict())
    return clone


def test_finetuning_resumes_exactly(tmp_path):
    seqs = [random_dna(int(n)) for n in RNG.integers(20, 60, 24)]
    data = LabelledSequences(seqs, [i % 2 for i in range(24)], ["a", "b"])
    dataset = LabelledDataset(data, tokenizer=DNATokenizer(), max_len=256, source="x")
    start = SequenceClassifier.from_backbone(from_pretrained("hyenadna-test"), ["a", "b"], dropout=0.1)

    def run(directory, crash_at=None, resume=False):
        model = _copy(start)
        task = ClassificationTask(model, optimizer=OptimizerConfig(lr=3e-3), rc_augment=True)
        module = LabelledDataModule(dataset, dataset, batch_size=4, seed=3)
        run_training(task, module, directory, steps=6, crash_at=crash_at, resume=resume)
        return model

    whole = run(tmp_path / "a")
    run(tmp_path / "b", crash_at=4)
    resumed = run(tmp_path / "b", resume=True)
    for p, q in zip(resumed.parameters(), whole.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6)


def test_dna_pretrain_learns_a_periodic_genome(tmp_path, capsys):
    (tmp_path / "g.fa").write_text(">g\n" + "ACGTTGCAAG" * 300 + "\n")
    args = ["pretrain", "--input", tmp_path / "g.fa", "--output", tmp_path / "m", "--model", "hyenadna-test"]
    args += ["--seq_len", 32, "--training.max_steps", 30, "--training.batch_size", 8, "--training.lr", 1e-2]
    args += ["--training.log_dir", tmp_path / "runs", "--training.limit_val_batches", 2]
    assert main([str(a) for a in args]) == 0
    out = capsys.readouterr().out
    bits = float(out.split("val/bits_per_base ")[1].split()[0])
    assert bits < 1.6  # a period-10 sequence: an untrained model is at 2 bits or more
    model = from_pretrained(tmp_path / "m")
    assert model.config.d_model == 16


def test_dna_finetune_writes_a_classifier(tmp_path, capsys):
    rows = "\n".join(f"{random_dna(24)},{'yes' if i % 2 else 'no'}" for i in range(8))
    (tmp_path / "t.csv").write_text("sequence,label\n" + rows + "\n")
    args = ["finetune", "--train", tmp_path / "t.csv", "--val", tmp_path / "t.csv", "--output", tmp_path / "c"]
    args += ["--model", "caduceus-ps-test", "--training.max_steps", 2, "--training.log_dir", tmp_path / "runs"]
    assert main([str(a) for a in args]) == 0
    out = capsys.readouterr().out
    assert "val/accuracy" in out and "val/mcc" in out and "val/auroc" in out
    classifier = from_pretrained(tmp_path / "c")
    assert isinstance(classifier, SequenceClassifier) and classifier.config.classes == ["no", "yes"]
    ids = torch.as_tensor(DNATokenizer().encode("ACGT" * 10))[None]
    assert classifier(ids).shape == (1, 2)


def test_training_bad_input(tmp_path, capsys):
    (tmp_path / "g.fa").write_text(">g\n" + random_dna(2000) + "\n")
    (tmp_path / "t.csv").write_text("ACGT,a\nACGA,b\n")
    (tmp_path / "v.csv").write_text("ACGT,c\n")
    (tmp_path / "long.csv").write_text(f"{random_dna(300)},a\nACGA,b\n")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    pre = ["pretrain", "--input", tmp_path / "g.fa", "--model", "hyenadna-test", "--seq_len", 64]
    fine = ["finetune", "--train", tmp_path / "t.csv", "--model", "hyenadna-test"]
    cases = [
        ([*pre, "--output", tmp_path / "o", "--seq_len", 512], "longer than the model's context"),
        ([*pre, "--output", tmp_path / "o", "--seq_len", 256], "validation part \\(200 bases\\) is shorter"),
        ([*pre, "--output", tmp_path / "taken"], "already exists"),
        ([*pre, "--output", tmp_path / "o", "--training.resume", "true"], "needs --training.checkpoint_dir"),
        ([*pre, "--output", tmp_path / "o", "--val_fraction", 0.6, "--test_fraction", 0.5], "val \\+ test < 1"),
        ([*fine, "--output", tmp_path / "o", "--val", tmp_path / "v.csv"], "labels c are not among the classes a, b"),
        (
            ["finetune", "--train", tmp_path / "long.csv", "--model", "hyenadna-test", "--output", tmp_path / "o"],
            "300 bases",
        ),
        ([*fine, "--output", tmp_path / "o", "--training.batch_size", 4], "fewer than one batch of 4"),
    ]
    for args, message in cases:
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert err.count("\n") == 1 and re.search(message, err), (message, err)
        assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_dna_pretrain_data_parallel_on_two_cpu_processes(tmp_path):
    """`dna pretrain --training.strategy ddp --training.devices 2` on the CPU (gloo): both ranks train, rank 0 writes
    one model."""
    import os
    import subprocess
    import sys

    (tmp_path / "g.fa").write_text(">g\n" + random_dna(3000) + "\n")
    args = ["pretrain", "--input", tmp_path / "g.fa", "--output", tmp_path / "m", "--model", "hyenadna-test"]
    args += ["--seq_len", 64, "--training.max_steps", 3, "--training.batch_size", 4, "--training.accelerator", "cpu"]
    args += ["--training.strategy", "ddp", "--training.devices", 2, "--training.log_dir", tmp_path / "runs"]
    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "longseq.genomics.cli", *map(str, args)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MEMBER: 2/2" in done.stderr  # Lightning's line from the second process
    assert done.stdout.count("saved ") == 1
    assert from_pretrained(tmp_path / "m").config.d_model == 16
