"""``dna predict`` (a classifier over windows) and ``dna score`` (variants of a VCF) end to end on tiny presets,
their documented aggregation and scores recomputed directly, and their bad input."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from longseq.core.registry import from_pretrained
from longseq.genomics.data.tokenizer import MASK, DNATokenizer
from longseq.genomics.models.classifier import SequenceClassifier
from tests.genomics.commands import dna

EXAMPLES = Path(__file__).parents[2] / "examples" / "data"
VCF, REFERENCE = EXAMPLES / "lambda_variants.vcf", EXAMPLES / "lambda_NC_001416.fa"
RNG = np.random.default_rng(1)


def random_dna(n: int) -> str:
    return "".join(RNG.choice(list("ACGT"), n))


def read_tsv(path: Path) -> list[dict[str, str]]:
    header, *rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [dict(zip(header, row, strict=True)) for row in rows]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    backbone = from_pretrained("hyenadna-test")
    SequenceClassifier.from_backbone(backbone, ["host", "phage"]).save_pretrained(root / "clf")
    SequenceClassifier.from_backbone(backbone, ["a", "b", "c"], task="multilabel").save_pretrained(root / "multi")
    for name in ("hyenadna-test", "caduceus-ps-test", "caduceus-ph-test"):
        from_pretrained(name).save_pretrained(root / name)
    return root


def window_outputs(model: SequenceClassifier, seq: str, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Each window's outputs and length, computed one window at a time."""
    outs, widths = [], []
    for start in range(0, len(seq), window):
        ids = torch.as_tensor(DNATokenizer().encode(seq[start : start + window]))[None]
        with torch.no_grad():
            logits = model(ids)
        probs = logits.softmax(-1) if model.config.task == "classification" else logits.sigmoid()
        outs.append(probs[0].numpy())
        widths.append(min(window, len(seq) - start))
    return np.stack(outs), np.asarray(widths, dtype=np.float64)


def test_predict_averages_windows_by_length(tmp_path, models, capsys):
    # 250 bases in windows of 100: 100 + 100 + 50, so the last window weighs half.
    records = {"long": random_dna(250), "short": random_dna(60)}
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in records.items()))
    for name in ("clf", "multi"):
        out = tmp_path / f"{name}.tsv"
        args = ["predict", "--input", fasta, "--output", out, "--model", models / name, "--window", 100]
        code, stdout, err = dna([*args, "--batch_size", 2], capsys)
        assert code == 0, err
        assert "predicted 2 sequence(s)" in stdout
        model = from_pretrained(models / name)
        rows = read_tsv(out)
        assert [r["id"] for r in rows] == ["long", "short"] and [r["windows"] for r in rows] == ["3", "1"]
        for row in rows:
            outs, widths = window_outputs(model, records[row["id"]], 100)
            expected = (outs * widths[:, None]).sum(0) / widths.sum()
            got = np.array([float(row[c]) for c in model.config.classes])
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
            if name == "clf":
                assert row["prediction"] == model.config.classes[int(expected.argmax())]
                assert got.sum() == pytest.approx(1, abs=1e-5)
            else:
                assert "prediction" not in row


def test_predict_reads_tables_and_bed_regions(tmp_path, models, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    seqs = [random_dna(40), random_dna(70)]
    (tmp_path / "t.csv").write_text("name,sequence,label\n" + "".join(f"s{i},{s},x\n" for i, s in enumerate(seqs)))
    pq.write_table(pa.table({"sequence": seqs, "label": [0, 1]}), tmp_path / "t.parquet")
    (tmp_path / "ref.fa").write_text(">chr\n" + "".join(seqs) + "\n")
    (tmp_path / "r.bed").write_text("chr\t0\t40\tfirst\nchr\t40\t110\tsecond\t0\t-\n")
    outputs = {}
    for name, args in {
        "csv": ["--input", tmp_path / "t.csv"],
        "parquet": ["--input", tmp_path / "t.parquet"],
        "bed": ["--input", tmp_path / "r.bed", "--reference", tmp_path / "ref.fa"],
    }.items():
        out = tmp_path / f"{name}.tsv"
        assert dna(["predict", *args, "--output", out, "--model", models / "clf"], capsys)[0] == 0
        outputs[name] = read_tsv(out)
    assert [r["id"] for r in outputs["csv"]] == ["s0", "s1"]
    assert [r["id"] for r in outputs["parquet"]] == ["row2", "row3"]  # parquet rows count as if after a header
    assert [r["id"] for r in outputs["bed"]] == ["first", "second"]
    assert [r["host"] for r in outputs["csv"]] == [r["host"] for r in outputs["parquet"]]
    assert outputs["bed"][0]["host"] == outputs["csv"][0]["host"]
    assert outputs["bed"][1]["host"] != outputs["csv"][1]["host"]  # the minus strand: the reverse complement


@pytest.mark.slow
def test_finetune_then_predict_on_the_bundled_tables(tmp_path, models, capsys):
    train, val = EXAMPLES / "phage_or_host_train.csv", EXAMPLES / "phage_or_host_val.csv"
    clf = tmp_path / "clf"
    args = ["finetune", "--data.train", train, "--data.val", val, "--output", clf, "--model", models / "hyenadna-test"]
    assert dna([*args, "--trainer.max_steps", 2, "--data.batch_size", 8], capsys)[0] == 0
    out = tmp_path / "preds.tsv"
    code, stdout, err = dna(["predict", "--input", val, "--output", out, "--model", clf], capsys)
    assert code == 0, err
    rows = read_tsv(out)
    assert len(rows) == 162 and set(rows[0]) == {"id", "length", "windows", "host", "phage", "prediction"}


def test_predict_refuses_a_language_model_and_bad_tables(tmp_path, models, capsys):
    (tmp_path / "bad.parquet").write_text("not parquet")
    (tmp_path / "short.csv").write_text("name,sequence\nx,\n")
    cases = [
        (["--input", VCF, "--model", models / "hyenadna-test"], "not a fine-tuned classifier"),
        (["--input", tmp_path / "bad.parquet", "--model", models / "clf"], "not a parquet file"),
        (["--input", tmp_path / "short.csv", "--model", models / "clf"], r"short.csv:2: empty sequence"),
    ]
    for args, message in cases:
        code, _, err = dna(["predict", *args, "--output", tmp_path / "o.tsv"], capsys)
        assert code == 2 and err.count("\n") == 1 and re.search(message, err), err
        assert not (tmp_path / "o.tsv").exists()


def causal_llr(model, ref: str, alt: str) -> float:
    total = []
    for text in (ref, alt):
        ids = torch.as_tensor(DNATokenizer().encode(text))[None]
        with torch.no_grad():
            logp = model(ids).log_softmax(-1)
        total.append(float(logp[0, :-1].gather(-1, ids[0, 1:, None]).sum()))
    return total[1] - total[0]


def windows(pos: int, ref: str, alt: str, window: int) -> tuple[str, str]:
    genome = "".join(line.strip() for line in REFERENCE.read_text().splitlines()[1:])
    start = pos - 1 - window // 2
    rest = genome[pos - 1 + len(ref) :]
    return genome[start : start + window], (genome[start : pos - 1] + alt + rest)[:window]


def test_score_hyenadna_on_the_bundled_vcf(tmp_path, models, capsys):
    args = ["score", "--vcf", VCF, "--reference", REFERENCE, "--window", 256]
    code, stdout, err = dna([*args, "--output", tmp_path / "h.tsv", "--model", models / "hyenadna-test"], capsys)
    assert code == 0, err
    assert "scored 8 variant(s)" in stdout and "skipped 1 symbolic, 2 near end" in stdout
    rows = read_tsv(tmp_path / "h.tsv")
    # VCF order, the multi-allelic record split in ALT order; the SV and the variants near either end skipped.
    assert [(r["id"], r["alt"]) for r in rows][-3:] == [("del4", "T"), ("multi", "T"), ("multi", "A")]
    assert [r["id"] for r in rows][:2] == ["snv_cI", "snv2"]
    model = from_pretrained(models / "hyenadna-test")
    for row in (r for r in rows if r["id"] in ("snv_cI", "ins4", "del4")):  # a substitution, an insertion, a deletion
        ref, alt = windows(int(row["pos"]), row["ref"], row["alt"], 256)
        assert float(row["llr"]) == pytest.approx(causal_llr(model, ref, alt), abs=1e-3)
        assert float(row["cosine_distance"]) >= 0 and float(row["l2_distance"]) > 0


@pytest.mark.parametrize("name", ["caduceus-ps-test", "caduceus-ph-test"])
def test_score_caduceus_masked_marginals(tmp_path, models, capsys, name):
    args = ["score", "--vcf", VCF, "--reference", REFERENCE, "--window", 64]
    out = tmp_path / f"{name}.tsv"
    assert dna([*args, "--model", models / name, "--output", out], capsys)[0] == 0
    rows = {(r["id"], r["alt"]): r for r in read_tsv(out)}  # substitutions only: indels have no masked marginal
    assert rows[("ins4", "GACGT")]["masked_llr"] == "" and rows[("del4", "T")]["masked_llr"] == ""
    model = from_pretrained(models / name)
    row = rows[("snv_cI", "T")]
    ref, _ = windows(5000, "C", "T", 64)
    ids = torch.as_tensor(DNATokenizer().encode(ref))[None]
    masked = ids.clone()
    masked[0, 32] = MASK
    with torch.no_grad():
        logp = model(masked).log_softmax(-1)[0, 32]
        expected = float(logp[DNATokenizer().encode("T")[0]] - logp[DNATokenizer().encode("C")[0]])
        if name == "caduceus-ph-test":  # averaged with the reverse complement strand (post-hoc conjoining)
            rc = torch.tensor([[{7: 10, 8: 9, 9: 8, 10: 7, 3: 3, 11: 11}[int(t)] for t in masked[0].flip(0)]])
            logp_rc = model(rc).log_softmax(-1)[0, 63 - 32]
            expected = (expected + float(logp_rc[7] - logp_rc[9])) / 2  # A vs G on the other strand
    assert float(row["masked_llr"]) == pytest.approx(expected, abs=1e-3)


def test_score_bad_input_one_line_exit_2_nothing_written(tmp_path, models, capsys):
    import pysam

    shutil.copy(REFERENCE, tmp_path / "ref.fa")
    shutil.copy(f"{REFERENCE}.fai", tmp_path / "ref.fa.fai")
    lines = VCF.read_text().splitlines(keepends=True)
    header = "".join(line for line in lines if line.startswith("#"))
    first = lines[len(header.splitlines())]  # near_start G>A at 120
    (tmp_path / "mismatch.vcf").write_text(header + first + first.replace("\tG\tA\t", "\tT\tA\t"))
    (tmp_path / "contig.vcf").write_text(header + first.replace("NC_001416.1", "chrZ", 1))
    (tmp_path / "broken.vcf").write_text("this is not a VCF\n")
    pysam.tabix_compress(str(tmp_path / "mismatch.vcf"), str(tmp_path / "mismatch.vcf.gz"))  # bgzipped: same line
    cases = [
        ("mismatch.vcf.gz", r"mismatch.vcf.gz:7: REF T at NC_001416.1:120 disagrees"),
        ("mismatch.vcf", r"mismatch.vcf:7: REF T at NC_001416.1:120 disagrees with the reference \(G\)"),
        ("contig.vcf", r"contig.vcf:6: contig 'chrZ' is not in the reference"),
        ("broken.vcf", "not a VCF or BCF file"),
        ("absent.vcf", "no such file"),
    ]
    for vcf, message in cases:
        before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
        args = ["score", "--vcf", tmp_path / vcf, "--reference", tmp_path / "ref.fa", "--window", 256]
        code, _, err = dna([*args, "--output", tmp_path / "o.tsv", "--model", models / "hyenadna-test"], capsys)
        assert code == 2 and err.count("\n") == 1 and re.search(message, err), (vcf, err)
        assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    code, _, err = dna(["score", "--vcf", VCF, "--reference", REFERENCE, "--output", VCF, "--model", "x"], capsys)
    assert code == 2 and "would overwrite the input" in err
