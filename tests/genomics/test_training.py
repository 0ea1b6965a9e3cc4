"""``dna pretrain`` and ``dna finetune``: masking, warm-up, learning, proven exact resume, the flag grammar and bad
input (one line, exit 2, nothing written)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import longseq
from longseq.genomics.cli import main
from longseq.genomics.data.tokenizer import MASK, PAD, DNATokenizer
from longseq.genomics.models.classifier import SequenceClassifier
from longseq.genomics.tasks.pretrain import mask_tokens, warmup_length
from tests.resume_harness import check_resume

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


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A random genome and a labelled table of two classes."""
    root = tmp_path_factory.mktemp("data")
    (root / "g.fa").write_text(">g\n" + random_dna(3000) + "\n")
    rows = "".join(f"{random_dna(int(n))},{'ab'[i % 2]}\n" for i, n in enumerate(RNG.integers(20, 60, 24)))
    (root / "t.csv").write_text("sequence,label\n" + rows)
    return {"genome": root / "g.fa", "table": root / "t.csv"}


def start_from(output: Path) -> list[str]:
    return ["--model", output]


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        # next-token prediction with embedding dropout, RC augmentation and sequence-length warm-up
        (
            "hyenadna-test",
            ["--data.rc_augment", "true", "--data.seq_warmup_start", 16, "--data.seq_warmup_stage_steps", 2],
        ),
        pytest.param("caduceus-ph-test", [], marks=pytest.mark.slow),  # masked LM, RC augmentation by default
    ],
)
def test_dna_pretrain_resumes_exactly(model, extra, files, tmp_path, monkeypatch):
    def command(output: Path, steps: int) -> list:
        args = ["pretrain", "--output", output, "--model", model, "--data.input", files["genome"]]
        args += ["--data.seq_len", 32, "--data.batch_size", 4, "--optimizer.lr", 3e-3]
        return [*args, *extra, "--trainer.max_steps", steps, "--trainer.progress_bar", "false"]

    check_resume(main, command, start_from, tmp_path, monkeypatch)


def test_dna_finetune_resumes_exactly(files, tmp_path, monkeypatch):
    def command(output: Path, steps: int) -> list:
        args = ["finetune", "--output", output, "--model", "hyenadna-test", "--data.train", files["table"]]
        args += ["--data.batch_size", 4, "--data.rc_augment", "true", "--dropout", 0.1, "--optimizer.lr", 3e-3]
        return [*args, "--trainer.max_steps", steps, "--trainer.progress_bar", "false"]

    check_resume(main, command, start_from, tmp_path, monkeypatch)


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_print_config_reads_back_the_trainer_flags(command, capsys):
    assert main([command, "--trainer.max-steps", "7", "--print_config"]) == 0
    assert re.search(r"^  max_steps: 7$", capsys.readouterr().out, re.MULTILINE)


def test_dna_pretrain_learns_a_periodic_genome(tmp_path, capsys):
    (tmp_path / "g.fa").write_text(">g\n" + "ACGTTGCAAG" * 300 + "\n")
    args = ["pretrain", "--data.input", tmp_path / "g.fa", "--output", tmp_path / "m", "--model", "hyenadna-test"]
    args += ["--data.seq_len", 32, "--data.batch_size", 8, "--trainer.max_steps", 30, "--optimizer.lr", 1e-2]
    args += ["--trainer.log_dir", tmp_path / "runs", "--trainer.limit_val_batches", 2]
    assert main([str(a) for a in args]) == 0
    out = capsys.readouterr().out
    bits = float(out.split("val/bits_per_base ")[1].split()[0])
    assert bits < 1.6  # a period-10 sequence: an untrained model is at 2 bits or more
    model = longseq.from_pretrained(tmp_path / "m")
    assert model.config.d_model == 16


def test_dna_finetune_writes_a_classifier_that_trains_further(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("sequence,label\n" + "".join(f"{random_dna(24)},{'ab'[i % 2]}\n" for i in range(8)))
    args = ["finetune", "--data.train", table, "--data.val", table, "--output", tmp_path / "c"]  # one batch each
    args += ["--model", "caduceus-ps-test", "--trainer.max_steps", 2, "--trainer.log_dir", tmp_path / "runs"]
    assert main([str(a) for a in args]) == 0
    out = capsys.readouterr().out
    assert "val/accuracy" in out and "val/mcc" in out and "val/auroc" in out
    classifier = longseq.from_pretrained(tmp_path / "c")
    assert isinstance(classifier, SequenceClassifier) and classifier.config.classes == ["a", "b"]
    ids = torch.as_tensor(DNATokenizer().encode("ACGT" * 10))[None]
    assert classifier(ids).shape == (1, 2)
    # --model a fine-tuned classifier: trained further, head included
    args = ["finetune", "--data.train", table, "--output", tmp_path / "c2", "--model", tmp_path / "c"]
    assert main([str(a) for a in [*args, "--trainer.max_steps", 1, "--trainer.log_dir", tmp_path / "runs"]]) == 0
    again = longseq.from_pretrained(tmp_path / "c2")
    assert not torch.equal(again.head.weight, classifier.head.weight)


def bad_training_inputs(tmp_path: Path, files: dict[str, Path]) -> list[tuple[list, str]]:
    (tmp_path / "one.csv").write_text("ACGT,a\nACGA,a\n")
    (tmp_path / "v.csv").write_text("ACGT,c\n")
    (tmp_path / "long.csv").write_text(f"{random_dna(300)},a\nACGA,b\n")
    (tmp_path / "huge.csv").write_text(f"{random_dna(200_000)},a\nACGA,b\n")  # over the csv module's field limit
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    (tmp_path / "file").write_text("")
    longseq.from_pretrained("mamba-tiny").save_pretrained(tmp_path / "lm")
    genome, table, out = files["genome"], files["table"], tmp_path / "o"
    pre = ["pretrain", "--data.input", genome, "--model", "hyenadna-test", "--data.seq_len", 64, "--output", out]
    fine = ["finetune", "--data.train", table, "--model", "hyenadna-test", "--output", out]
    return [
        # numbers out of range, refused as the flags are parsed
        ([*pre, "--data.seq_len", 0], "seq_len must be positive"),
        ([*pre, "--mask_prob", 1.5], r"--mask_prob must be in \(0, 1\]"),
        ([*pre, "--data.batch_size", 0], "batch_size must be positive"),
        ([*pre, "--data.val_fraction", 0.6, "--data.test_fraction", 0.5], "their sum < 1"),
        ([*pre, "--data.seq_warmup_start", 16], "needs seq_warmup_stage_steps >= 1"),
        ([*pre, "--trainer.max_steps", 0], "max_steps must be positive"),
        ([*pre, "--trainer.devices", 0], "devices must be positive"),
        ([*pre, "--optimizer.lr", -1], "lr must be positive"),
        ([*pre, "--optimizer.lr", "nan"], "optimizer.lr"),
        ([*fine, "--dropout", 1.5], r"--dropout must be in \[0, 1\)"),
        ([*fine, "--data.batch_size", -1], "batch_size must be positive"),
        # what these files cannot do
        ([*pre, "--data.seq_len", 512], "longer than the model's context"),
        ([*pre, "--data.seq_len", 256, "--data.val_fraction", 0.05], r"validation part \(150 bases\) is shorter"),
        ([*pre, "--model", tmp_path / "lm"], "holds a CausalLM, not a HyenaDNA or Caduceus model"),
        ([*pre, "--trainer.resume", "last"], "needs a checkpoint_dir"),
        ([*fine, "--data.train", tmp_path / "one.csv"], "every row has the label 'a'; a classifier needs two"),
        ([*fine, "--data.val", tmp_path / "v.csv"], "labels c are not among the classes a, b"),
        ([*fine, "--data.train", tmp_path / "long.csv"], "300 bases, more than the context 256"),
        ([*fine, "--data.train", tmp_path / "huge.csv"], "200000 bases, more than the context 256"),
        ([*fine, "--data.train", tmp_path / "binary.csv"], "binary.csv"),
        ([*fine, "--data.batch_size", 100], "fewer than one batch of 100"),
        # outputs that would destroy something
        ([*pre, "--output", genome], "would overwrite the input"),
        ([*fine, "--output", table], "would overwrite the input"),
        ([*pre, "--output", tmp_path / "taken"], "already exists"),
        ([*fine, "--output", tmp_path / "file"], "already exists"),
        ([*pre, "--trainer.checkpoint_dir", out / "ckpt"], "lies inside --output"),
    ] + ([([*pre, "--trainer.accelerator", "cuda"], "--trainer: .*CUDA")] if not torch.cuda.is_available() else [])


def test_training_bad_input_one_line_exit_2_nothing_written(tmp_path, files, capsys):
    for args, message in bad_training_inputs(tmp_path, files):
        before = sorted(tmp_path.rglob("*"))
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("dna")]
        assert code == 2, (args, err)
        assert len(lines) == 1 and lines[0].startswith("dna: error:") and re.search(message, lines[0]), (message, err)
        assert sorted(tmp_path.rglob("*")) == before, args


def test_resuming_the_run_of_another_model_is_refused(files, tmp_path, capsys):
    common = ["--data.input", files["genome"], "--data.seq_len", 32, "--trainer.checkpoint_dir", tmp_path / "ckpt"]
    common += ["--trainer.log_dir", tmp_path / "runs", "--trainer.max_steps", 1]
    assert main([str(a) for a in ["pretrain", "--output", tmp_path / "a", "--model", "caduceus-ps-test", *common]]) == 0
    args = ["pretrain", "--output", tmp_path / "b", "--model", "hyenadna-test", *common, "--trainer.resume", "last"]
    assert main([str(a) for a in args]) == 2
    assert re.search(r"last\.ckpt does not fit PretrainTask: missing model\.layers", capsys.readouterr().err)
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_dna_pretrain_data_parallel_on_two_cpu_processes(tmp_path):
    """`dna pretrain --trainer.strategy ddp --trainer.devices 2` on the CPU (gloo): both ranks train, rank 0 writes
    one model."""
    import os
    import subprocess
    import sys

    (tmp_path / "g.fa").write_text(">g\n" + random_dna(3000) + "\n")
    args = ["pretrain", "--data.input", tmp_path / "g.fa", "--output", tmp_path / "m", "--model", "hyenadna-test"]
    args += ["--data.seq_len", 64, "--trainer.max_steps", 3, "--data.batch_size", 4, "--trainer.accelerator", "cpu"]
    args += ["--trainer.strategy", "ddp", "--trainer.devices", 2, "--trainer.log_dir", tmp_path / "runs"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
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
    assert longseq.from_pretrained(tmp_path / "m").config.d_model == 16
