"""Build the bundled "phage or host?" classification tables (examples/data/phage_or_host_{train,val}.csv).

Rows are ``sequence,label``: non-overlapping 200 bp windows of the lambda phage genome (label ``phage``) and as
many 200 bp windows drawn from the last 10 % of the E. coli 536 genome (label ``host``, the part that
``dna pretrain --data.test_fraction 0.1`` holds out), shuffled and split 2:1 into training and validation.

    python -m examples.make_phage_or_host --ecoli ecoli_536_NC_008253.fna.gz
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from longseq.genomics.data.fasta import read_records

EXAMPLES = Path(__file__).parent
WINDOW = 200


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ecoli", required=True, type=Path, help="the E. coli 536 FASTA(.gz)")
    parser.add_argument("--output", type=Path, default=EXAMPLES / "data", help="the directory for the two tables")
    args = parser.parse_args(argv)
    (phage,) = read_records(EXAMPLES / "data" / "lambda_phage.fa.gz")
    (host,) = read_records(args.ecoli)
    rows = [(phage.seq[s : s + WINDOW].upper(), "phage") for s in range(0, len(phage.seq) - WINDOW + 1, WINDOW)]
    rng = random.Random(0)
    held_out = int(0.9 * len(host.seq))
    starts = rng.sample(range(held_out, len(host.seq) - WINDOW + 1, WINDOW), len(rows))
    rows += [(host.seq[s : s + WINDOW].upper(), "host") for s in starts]
    rng.shuffle(rows)
    cut = 2 * len(rows) // 3
    for name, part in (("train", rows[:cut]), ("val", rows[cut:])):
        path = args.output / f"phage_or_host_{name}.csv"
        path.write_text("sequence,label\n" + "".join(f"{seq},{label}\n" for seq, label in part))
        print(f"{path}: {len(part)} rows")


if __name__ == "__main__":
    main()
