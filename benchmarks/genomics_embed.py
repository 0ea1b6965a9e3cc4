"""``dna embed`` throughput (bases per second) and peak memory against input length, HyenaDNA vs Caduceus.

Each point is a fresh ``dna embed`` process on a prefix of a real genome (one FASTA record), so the peak
resident memory (``ru_maxrss`` of that process) includes everything the command holds: the model, the record,
the batches and the output. Throughput is what the command prints (bases over wall time of the embedding).
Medians over ``--repeats`` runs; lengths at or above ``--single-above`` bases run once (they take minutes).

    python -m benchmarks.genomics_embed --genome ecoli_536_NC_008253.fna.gz \\
        --lengths 10000 100000 1000000 4938920 --plot benchmarks/plots/genomics_embed.png
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = {"hyenadna-tiny-1k": "HyenaDNA tiny-1k (2 x 128)", "caduceus-ps-1k-d118": "Caduceus-PS 1k (4 x 118)"}


def run_embed(model: str, fasta: Path, out: Path, batch_size: int) -> tuple[float, float]:
    """One ``dna embed`` process: (bases per second, peak RSS in MiB)."""
    argv = [sys.executable, "-m", "longseq.genomics.cli", "embed", "--input", str(fasta), "--output", str(out)]
    argv += ["--model", model, "--batch_size", str(batch_size)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        raise SystemExit(f"dna embed failed ({model}, {fasta}): {stderr.strip().splitlines()[-1]}")
    rate = float(re.search(r"\(([\d,]+) bases/s\)", stdout).group(1).replace(",", ""))
    return rate, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genome", required=True, type=Path, help="FASTA(.gz) of one long record")
    parser.add_argument("--lengths", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--caduceus-max", type=int, default=1_000_000, help="longest input for Caduceus")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single-above", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args(argv)

    from longseq.genomics.data.fasta import read_records

    record = next(iter(read_records(args.genome)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for length in args.lengths:
            if length > len(record.seq):
                raise SystemExit(f"{args.genome} has {len(record.seq)} bases, fewer than {length}")
            fasta = Path(tmp) / f"prefix{length}.fa"
            fasta.write_text(f">{record.id}:0-{length}\n{record.seq[:length]}\n")
            for model in args.models:
                if model.startswith("caduceus") and length > args.caduceus_max:
                    continue
                repeats = 1 if length >= args.single_above else args.repeats
                runs = [run_embed(model, fasta, Path(tmp) / "out.npz", args.batch_size) for _ in range(repeats)]
                rate = statistics.median(r for r, _ in runs)
                memory = statistics.median(m for _, m in runs)
                rows.append((model, length, repeats, rate, memory))
                print(
                    f"{model:22s} {length:>10,d} bp  {rate:>10,.0f} bases/s  peak {memory:>7.0f} MiB  ({repeats} runs)"
                )

    print("\n| model | input (bp) | runs | bases/s | peak RSS (MiB) | memory / smallest input |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for model in args.models:
        mine = [r for r in rows if r[0] == model]
        for _, length, repeats, rate, memory in mine:
            ratio = memory / mine[0][4]
            print(
                f"| {MODELS.get(model, model)} | {length:,} | {repeats} | {rate:,.0f} | {memory:,.0f} | {ratio:.2f} |"
            )
    if args.plot:
        plot(rows, args.plot)


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed, memory) = plt.subplots(1, 2, figsize=(9, 3.5))
    for model in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == model]
        lengths = [r[1] for r in mine]
        speed.plot(lengths, [r[3] for r in mine], "o-", label=MODELS.get(model, model))
        memory.plot(lengths, [r[4] for r in mine], "o-", label=MODELS.get(model, model))
    for ax, label in ((speed, "bases / s"), (memory, "peak RSS (MiB)")):
        ax.set_xscale("log")
        ax.set_xlabel("input length (bp)")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    speed.legend(fontsize=8)
    fig.suptitle("dna embed on CPU (2 cores, torch 2.9.1), windows of the model context")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
