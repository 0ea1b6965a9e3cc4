"""Demo step "genomics": the bundled tiny HyenaDNA, pretrained on E. coli, embeds the lambda phage genome.

``dna embed`` cuts the genome into overlapping windows and writes one mean-pooled embedding per window to an
``.npz``; the step then projects the window embeddings on their first two principal components and plots them
coloured by the window's GC content, and along the genome next to the GC content itself. It also scores the
genome with the same model (bits per base; 2.0 is a uniform guess): the model never saw lambda phage.

The model (``examples/hyenadna_tiny_ecoli``, 1.8 MB) is the released tiny-1k HyenaDNA architecture (2 x 128,
438 k parameters) pretrained with ``dna pretrain`` on the first 80 % of E. coli 536 on a CPU (the commands and
its held-out bits per base are in benchmarks/RESULTS.md, section genomics). The first principal component of
mean-pooled embeddings follows GC content for any model, trained or not (the mean of the base embeddings is
linear in the base composition); the plot shows the data, it is not evidence of learning. The bits per base are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).parent
GENOME = EXAMPLES / "data" / "lambda_phage.fa.gz"  # NCBI RefSeq NC_001416.1, 48,502 bp
MODEL = EXAMPLES / "hyenadna_tiny_ecoli"
# Read when the step runs, so a test can change them.
WINDOW = 512
STRIDE = 256


def gc_content(seq: str, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The fraction of G and C in each window [start, end) of ``seq``."""
    is_gc = np.frombuffer(seq.upper().encode(), dtype=np.uint8)
    is_gc = np.isin(is_gc, np.frombuffer(b"GC", dtype=np.uint8)).astype(np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(is_gc)])
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def principal_components(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The projections (n, k) of the rows of ``x`` on their first k principal components, and the fraction of
    the variance each explains."""
    centred = x - x.mean(0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    explained = singular**2 / (singular**2).sum()
    return centred @ vt[:k].T, explained[:k]


def plot(png: Path, pcs: np.ndarray, explained: np.ndarray, gc: np.ndarray, middles: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from longseq.core.io import atomic_output

    fig, (scatter, along) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    points = scatter.scatter(pcs[:, 0], pcs[:, 1], c=gc, cmap="viridis", s=12)
    fig.colorbar(points, ax=scatter, label="GC content of the window")
    scatter.set(
        xlabel=f"PC1 ({explained[0]:.0%} of the variance)",
        ylabel=f"PC2 ({explained[1]:.0%})",
        title=f"lambda phage, {len(gc)} windows of {WINDOW} bp",
    )
    along.plot(middles / 1000, pcs[:, 0], label="PC1 of the embedding")
    along.set(xlabel="position in the genome (kb)", ylabel="PC1")
    twin = along.twinx()
    twin.plot(middles / 1000, gc, color="tab:orange", alpha=0.7, label="GC content")
    twin.set_ylabel("GC content")
    along.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    along.set_title("along the genome")
    fig.suptitle("tiny HyenaDNA (pretrained on E. coli) embeddings of lambda phage, dna embed --pooling mean")
    fig.tight_layout()
    with atomic_output(png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def run(out_dir: Path) -> None:
    import torch

    from longseq import from_pretrained
    from longseq.genomics.cli import main
    from longseq.genomics.data.fasta import read_records
    from longseq.genomics.data.tokenizer import DNATokenizer
    from longseq.genomics.evaluate import causal_scores

    out_dir.mkdir(parents=True, exist_ok=True)
    npz = out_dir / "lambda_phage_embeddings.npz"
    args = ["embed", "--input", str(GENOME), "--output", str(npz), "--model", str(MODEL)]
    args += ["--window", str(WINDOW), "--stride", str(STRIDE), "--pooling", "mean"]
    print("$ dna " + " ".join(args))
    if main(args) != 0:
        raise SystemExit("dna embed failed")

    data = np.load(npz)
    (record,) = read_records(GENOME)
    embeddings, starts, ends = data["embeddings"], data["start"], data["end"]
    gc = gc_content(record.seq, starts, ends)
    pcs, explained = principal_components(embeddings)
    correlations = [abs(np.corrcoef(pcs[:, i], gc)[0, 1]) for i in range(2)]
    print(
        f"{len(embeddings)} window embeddings of dimension {embeddings.shape[1]} in {npz}; "
        f"|correlation| of PC1, PC2 with the window's GC content: {correlations[0]:.2f}, {correlations[1]:.2f}"
    )
    png = out_dir / "lambda_phage_embeddings.png"
    plot(png, pcs, explained, gc, (starts + ends) / 2)
    print(f"plot: {png}")

    model = from_pretrained(MODEL)
    ids = DNATokenizer().encode(record.seq)
    with torch.inference_mode():
        scores = causal_scores(model, ids, 0, len(ids), window=WINDOW, context=WINDOW // 2)
    print(
        f"the same model scores lambda phage at {scores.bits_per_base:.3f} bits per base "
        "(a uniform guess over A, C, G, T: 2.000; it was trained on E. coli only)"
    )
