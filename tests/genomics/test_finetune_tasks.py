"""``dna finetune`` for the benchmark layouts: multi-label and regression heads, GenomicBenchmarks directories,
Nucleotide Transformer parquet tables, the best checkpoint by a metric, early stopping, a frozen backbone."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import longseq
from longseq.genomics.data.tables import read_labelled
from longseq.genomics.data.tokenizer import DNATokenizer, pad_batch
from tests.genomics.commands import dna

RNG = np.random.default_rng(4)


def random_dna(n: int) -> str:
    return "".join(RNG.choice(list("ACGT"), n))


def run(tmp_path, capsys, *args, steps: int = 2):
    base = ["finetune", "--model", "hyenadna-test", "--trainer.max_steps", steps, "--data.batch_size", 4]
    code, out, err = dna([*base, "--trainer.log_dir", tmp_path / "runs", *args], capsys)
    assert code == 0, err
    return out


def test_multilabel_and_regression_heads(tmp_path, capsys):
    rows = [(random_dna(24), i % 2, (i // 2) % 2, 0.5 * i) for i in range(8)]
    (tmp_path / "m.csv").write_text("sequence,open,bound\n" + "".join(f"{s},{a},{b}\n" for s, a, b, _ in rows))
    (tmp_path / "r.tsv").write_text("sequence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, _, _, y in rows))
    out = run(tmp_path, capsys, "--task", "multilabel", "--data.train", tmp_path / "m.csv", "--data.val",
              tmp_path / "m.csv", "--output", tmp_path / "m")  # fmt: skip
    assert "val/auroc" in out and "val/auprc" in out and "best val/auroc" in out
    model = longseq.from_pretrained(tmp_path / "m")
    assert (model.config.task, model.config.classes) == ("multilabel", ["open", "bound"])
    out = run(tmp_path, capsys, "--task", "regression", "--data.train", tmp_path / "r.tsv", "--data.val",
              tmp_path / "r.tsv", "--output", tmp_path / "r", "--monitor", "val/mse")  # fmt: skip
    assert all(name in out for name in ("val/pearson", "val/spearman", "val/mse", "best val/mse"))
    assert longseq.from_pretrained(tmp_path / "r").config.classes == ["label"]
    # continuing a multi-label model with a table of another label count is refused, in one line
    (tmp_path / "m3.csv").write_text("sequence,a,b,c\nACGT,0,1,1\n")
    args = ["finetune", "--task", "multilabel", "--data.train", tmp_path / "m3.csv", "--model", tmp_path / "m"]
    code, _, err = dna([*args, "--output", tmp_path / "m2"], capsys)
    assert code == 2 and "3 target column(s) (a, b, c); the model has 2" in err and not (tmp_path / "m2").exists()


def test_genomic_benchmarks_directories_and_nt_parquet(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for split in ("train", "test"):
        for label in ("positive", "negative"):
            (tmp_path / "gb" / split / label).mkdir(parents=True)
            for i in range(4):
                (tmp_path / "gb" / split / label / f"{i}.txt").write_text(random_dna(30))
    data = read_labelled(tmp_path / "gb" / "train")
    assert data.classes == ["negative", "positive"] and data.labels == [0] * 4 + [1] * 4
    out = run(tmp_path, capsys, "--data.train", tmp_path / "gb" / "train", "--data.val", tmp_path / "gb" / "test",
              "--output", tmp_path / "g")  # fmt: skip
    assert all(f"val/{name}" in out for name in ("accuracy", "mcc", "f1", "auroc", "auprc"))
    table = pa.table({"sequence": [random_dna(30) for _ in range(8)], "label": [0, 1] * 4, "name": list("abcdefgh")})
    pq.write_table(table, tmp_path / "nt.parquet")
    data = read_labelled(tmp_path / "nt.parquet")
    assert data.classes == ["0", "1"] and data.labels == [0, 1] * 4 and data.sequences == table["sequence"].to_pylist()


def validation_loss(model, table) -> float:
    data = read_labelled(table)
    ids, lengths = pad_batch([DNATokenizer().encode(s) for s in data.sequences])
    with torch.no_grad():
        return float(F.cross_entropy(model(ids, lengths), torch.tensor(data.labels)))


def test_the_best_checkpoint_is_written_and_patience_stops_early(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("sequence,label\n" + "".join(f"{random_dna(24)},{'ab'[i % 2]}\n" for i in range(8)))
    args = ["--data.train", table, "--data.val", table, "--trainer.val_every_n_batches", 1, "--optimizer.lr", 0.05]
    out = run(tmp_path, capsys, *args, "--monitor", "val/loss", "--output", tmp_path / "c", steps=4)
    best = float(re.search(r"best val/loss ([\d.]+) at step (\d+)", out)[1])
    assert validation_loss(longseq.from_pretrained(tmp_path / "c"), table) == pytest.approx(best, abs=1e-4)
    # A learning rate too small to move the loss: no improvement after the first check, so 1 + patience checks.
    args = [*args[:-2], "--optimizer.lr", 1e-12, "--patience", 2, "--output", tmp_path / "e"]
    out = run(tmp_path, capsys, *args, steps=50)
    assert "stopped early at step 3" in out


def test_a_frozen_backbone_trains_only_the_head(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("sequence,label\n" + "".join(f"{random_dna(24)},{'ab'[i % 2]}\n" for i in range(8)))
    longseq.from_pretrained("hyenadna-test").save_pretrained(tmp_path / "b")
    args = ["--data.train", table, "--freeze_backbone", "true", "--output", tmp_path / "c", "--optimizer.lr", 0.05]

    run(tmp_path, capsys, *args, "--model", tmp_path / "b")
    before, after = longseq.from_pretrained(tmp_path / "b"), longseq.from_pretrained(tmp_path / "c")
    for (name, p), q in zip(before.state_dict().items(), after.backbone.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert after.head.weight.abs().max() > 0
