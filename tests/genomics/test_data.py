"""Sequence readers (FASTA / FASTQ / GenBank, gzipped or not), windows, labelled tables, BED intervals."""

from __future__ import annotations

import gzip

import pytest

from longseq.core.io import InputError
from longseq.genomics.data.bed import bed_records, read_bed
from longseq.genomics.data.fasta import read_records, reverse_complement_text, window_starts
from longseq.genomics.data.tables import read_labelled

FASTA = ">chr1 first\nACGTAC\nGTNN\n>chr2\nacgtRY\n"


def write(path, text, gz=False):
    if gz:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_fasta_records_stream_gzipped_or_not(tmp_path, gz):
    path = write(tmp_path / "x.txt", FASTA, gz)  # the name says nothing: content decides
    assert [(r.id, r.seq) for r in read_records(path)] == [("chr1", "ACGTACGTNN"), ("chr2", "acgtRY")]


def test_fastq_and_genbank(tmp_path):
    fq = write(tmp_path / "r.fq.gz", "@r1 x\nACGT\n+\nIIII\n@r2\nGG\n+\nII\n", gz=True)
    assert [(r.id, r.seq) for r in read_records(fq)] == [("r1", "ACGT"), ("r2", "GG")]
    from Bio.Seq import Seq
    from Bio.SeqIO import write as write_records
    from Bio.SeqRecord import SeqRecord

    record = SeqRecord(Seq("ACGTTGCA"), id="NC_1.1", name="NC_1", annotations={"molecule_type": "DNA"})
    write_records([record], tmp_path / "g.gbk", "genbank")
    assert [(r.id, r.seq) for r in read_records(tmp_path / "g.gbk")] == [("NC_1.1", "ACGTTGCA")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        ("hello\n>a\nACGT\n", "not FASTA, FASTQ or GenBank"),
        (">a\n>b\nACGT\n", "record 'a' is empty"),
        ("@r1\nACGT\n+\nIII\n", "malformed FASTQ: Lengths of sequence and quality values differs"),
        ("@r1\nACGT\n+\nIIII\n@r2\nAC\n", "malformed FASTQ after record 1"),
    ],
)
def test_bad_sequence_files_get_one_line_errors(tmp_path, text, message):
    path = write(tmp_path / "bad.fa", text)
    with pytest.raises(InputError, match=message):
        list(read_records(path))


def test_truncated_gzip_and_missing_file(tmp_path):
    data = gzip.compress(FASTA.encode() * 200)
    (tmp_path / "t.fa.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="malformed FASTA|cannot read"):
        list(read_records(tmp_path / "t.fa.gz"))
    with pytest.raises(InputError, match="no such file"):
        list(read_records(tmp_path / "none.fa"))


def test_window_starts_cover_the_sequence():
    assert list(window_starts(10, 4, 4)) == [0, 4, 8]
    assert list(window_starts(10, 4, 2)) == [0, 2, 4, 6]
    assert list(window_starts(3, 4, 4)) == [0]
    assert list(window_starts(8, 4, 4)) == [0, 4]
    with pytest.raises(InputError, match="must be positive"):
        window_starts(8, 0, 4)


def test_reverse_complement_text():
    assert reverse_complement_text("AACGtn") == "naCGTT"


def test_labelled_tables(tmp_path):
    csv = write(tmp_path / "a.csv", "id,label,sequence\nx,1,ACGT\ny,0,GG\n\nz,1,TT\n")
    data = read_labelled(csv)
    assert (data.sequences, data.labels, data.classes) == (["ACGT", "GG", "TT"], [1, 0, 1], ["0", "1"])
    tsv = write(tmp_path / "b.tsv", "ACGT\tpromoter\nGG\tother\n")
    data = read_labelled(tsv)
    assert (data.labels, data.classes) == ([1, 0], ["other", "promoter"])
    with pytest.raises(InputError, match="labels x are not among the classes 0, 1"):
        read_labelled(write(tmp_path / "c.csv", "ACGT,x\n"), classes=["0", "1"])
    with pytest.raises(InputError, match=r"c\.csv:2: expected a sequence and a label"):
        read_labelled(write(tmp_path / "c.csv", "ACGT,1\nGG\n"))
    with pytest.raises(InputError, match="the file is empty"):
        read_labelled(write(tmp_path / "c.csv", ""))


def test_bed_intervals_over_a_reference(tmp_path):
    fasta = write(tmp_path / "ref.fa", FASTA)
    bed = write(tmp_path / "x.bed", "track name=x\nchr2\t0\t4\tp\t0\t-\nchr1\t2\t5\n")
    assert [(r.id, r.seq) for r in bed_records(fasta, bed)] == [("chr1:2-5", "GTA"), ("p", "acgt")]
    with pytest.raises(InputError, match="past the end of chr1"):
        list(bed_records(fasta, write(tmp_path / "y.bed", "chr1\t2\t50\n")))
    with pytest.raises(InputError, match="chromosomes not in .*: chrX"):
        list(bed_records(fasta, write(tmp_path / "y.bed", "chrX\t2\t5\n")))
    with pytest.raises(InputError, match="need 0 <= start < end"):
        read_bed(write(tmp_path / "y.bed", "chr1\t5\t5\n"))
