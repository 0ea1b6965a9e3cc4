"""Held-out bits per base on E. coli: tiny HyenaDNA and tiny Caduceus against count-based baselines.

The genome is split by position as ``dna pretrain --data.val_fraction 0.1 --data.test_fraction 0.1`` splits it:
the first 80 % trains, the next 10 % validates, the last 10 % is held out. The models were pretrained with
``dna pretrain`` (commands in benchmarks/RESULTS.md); this script only scores them, and it is the only
reader of the held-out part. Margins over the baselines come with a 95 % block-bootstrap interval.

- HyenaDNA (causal) against the best order-k Markov chain: k and the smoothing chosen on the validation part,
  both scored on every held-out position (the model with at least ``--context`` bases of preceding sequence).
- Caduceus (masked LM, 15 % selected, 80/10/10) against the best two-sided k-context model (k bases on each
  side, chosen on validation), scored on the same positions: those shown to the model as ``[MASK]``. The
  baseline sees the true neighbours while the model sees a window in which 15 % of the bases are masked, so the
  comparison favours the baseline.

    python -m benchmarks.genomics_ecoli --genome ecoli_536_NC_008253.fna.gz \\
        --hyenadna runs/hyenadna-tiny-ecoli --caduceus runs/caduceus-ps-ecoli
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from longseq import from_pretrained
from longseq.genomics.data.splits import split_genome
from longseq.genomics.evaluate import causal_scores, masked_scores
from longseq.genomics.markov import bases_from_ids, select


def margin_interval(
    model_bits: np.ndarray, baseline_bits: np.ndarray, *, block: int = 1000, draws: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """The mean margin (baseline - model, bits/base; positive: the model is better) with a 95 % block-bootstrap
    interval: positions are resampled in contiguous blocks of ``block`` (neighbouring positions are correlated),
    the same blocks for both, so the interval is that of the paired difference."""
    diff = (baseline_bits - model_bits)[: len(model_bits) // block * block].reshape(-1, block).mean(1)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (draws, len(diff)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genome", required=True, type=Path)
    parser.add_argument("--hyenadna", type=Path, help="a pretrained HyenaDNA directory")
    parser.add_argument("--caduceus", type=Path, help="a pretrained Caduceus directory")
    parser.add_argument("--window", type=int, default=1024, help="HyenaDNA scoring window")
    parser.add_argument("--context", type=int, default=512, help="least preceding bases per scored position")
    parser.add_argument("--mlm-window", type=int, default=256, help="Caduceus scoring window")
    parser.add_argument("--mlm-seeds", type=int, default=2, help="masks drawn per Caduceus window")
    parser.add_argument("--max-order", type=int, default=12, help="largest Markov order tried")
    parser.add_argument("--max-two-sided", type=int, default=6, help="largest two-sided context tried")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)

    split = split_genome(args.genome, val_fraction=0.1, test_fraction=0.1)
    if len(split.ids) != 1:
        raise SystemExit("this benchmark expects a genome of one record")
    full = np.concatenate([split.train[0], split.val[0], split.test[0]]).astype(np.int64)
    a, b, n = len(split.train[0]), len(split.train[0]) + len(split.val[0]), len(full)
    bases = bases_from_ids(full)
    print(f"{split.ids[0]}: {n:,} bases; train [0, {a:,}), validation [{a:,}, {b:,}), held out [{b:,}, {n:,})")
    results: dict = {"genome": split.ids[0], "bases": n, "train": a, "val": b - a, "test": n - b}

    markov, table = select(bases[:a], bases[a - args.max_order : b], orders=range(args.max_order + 1))
    results["markov_validation"] = table
    print("order-k Markov, validation bits/base:", ", ".join(f"k={k} {bits:.4f}" for k, _, bits in table))
    test_positions = np.arange(b, n)
    results["markov"] = {
        "k": markov.k,
        "alpha": markov.alpha,
        "test": float(markov.bits_at(bases, test_positions).mean()),
    }
    print(f"best Markov k={markov.k} alpha={markov.alpha}: held-out {results['markov']['test']:.4f} bits/base")

    if args.hyenadna:
        model = from_pretrained(args.hyenadna)
        scores = causal_scores(model, full, b, n, window=args.window, context=args.context)
        markov_bits = markov.bits_at(bases, scores.positions)
        margin = margin_interval(scores.bits, markov_bits)
        results["hyenadna"] = {
            "test": scores.bits_per_base,
            "markov_same_positions": float(markov_bits.mean()),
            "margin_over_markov_95ci": margin,
        }
        print(
            f"HyenaDNA {args.hyenadna}: held-out {scores.bits_per_base:.4f} bits/base"
            f" (Markov {markov_bits.mean():.4f});"
            f" margin {margin[0]:.4f} [{margin[1]:.4f}, {margin[2]:.4f}] (95 % block bootstrap)"
        )

    if args.caduceus:
        two, table2 = select(
            bases[:a], bases[a - args.max_two_sided : b], orders=range(args.max_two_sided + 1), two_sided=True
        )
        results["two_sided_validation"] = table2
        print("two-sided k-context, validation:", ", ".join(f"k={k} {bits:.4f}" for k, _, bits in table2))
        model = from_pretrained(args.caduceus)
        scores = masked_scores(model, full, b, n, window=args.mlm_window, seeds=args.mlm_seeds)
        two_bits = two.bits_at(bases, scores.positions)
        baseline = two_bits.mean()
        order = np.argsort(scores.positions, kind="stable")  # blocks of neighbouring positions
        margin = margin_interval(scores.bits[order], two_bits[order], block=150)
        results["caduceus"] = {
            "test_masked": scores.bits_per_base,
            "margin_over_two_sided_95ci": margin,
            "masked_positions": int(len(scores.positions)),
            "two_sided": {"k": two.k, "alpha": two.alpha, "same_positions": float(baseline)},
            "markov_same_positions": float(markov.bits_at(bases, scores.positions).mean()),
        }
        print(
            f"Caduceus {args.caduceus}: {len(scores.positions):,} masked held-out positions, "
            f"{scores.bits_per_base:.4f} bits/base (two-sided k={two.k}: {baseline:.4f}); margin {margin[0]:.4f}"
            f" [{margin[1]:.4f}, {margin[2]:.4f}] (95 % block bootstrap)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
