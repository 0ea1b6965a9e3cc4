"""`make demo`, genomics step (on the first 6 kb of the bundled lambda phage genome): dna embed with the bundled
tiny HyenaDNA, the PCA plot, and the model's bits per base."""

import gzip

import numpy as np

from examples import demo, demo_genomics
from longseq.genomics.data.fasta import read_records


def test_the_genomics_demo_step(tmp_path, monkeypatch, capsys):
    (record,) = read_records(demo_genomics.GENOME)
    short = tmp_path / "lambda_6kb.fa.gz"
    with gzip.open(short, "wt") as handle:
        handle.write(f">{record.id}\n{record.seq[:6000]}\n")
    monkeypatch.setattr(demo_genomics, "GENOME", short)
    demo.main(["--only", "genomics", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    step = tmp_path / "out" / "genomics"
    data = np.load(step / "lambda_phage_embeddings.npz")
    assert data["start"].tolist() == list(range(0, 6000 - 512 + 256, 256))
    assert data["embeddings"].shape == (len(data["start"]), 128)
    assert (step / "lambda_phage_embeddings.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bits = float(out.split("scores lambda phage at ")[1].split()[0])
    assert 1.0 < bits < 2.0, out  # a pretrained model beats a uniform guess on DNA it never saw
    assert "demo finished" in out
