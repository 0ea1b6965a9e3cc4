"""Held-out bits per byte of a trained byte model next to gzip and xz at level 9 on the same bytes.

Reads a ``bytelm train`` output directory (the model): its ``split.json`` names the test files (never trained
on, never used for validation); their bytes, concatenated in the listed order, are scored by the model
(consecutive windows of its context, each starting without history; ``--window W --stride S``: windows of W bytes
every S bytes, so that each byte has at least W - S bytes of history) and compressed by Python's gzip (zlib) and
lzma (xz) modules at level 9 (the whole stream at once: the compressors get all the history they can use).

    .venv/bin/python -m benchmarks.bytes_heldout --run RUN_DIR --data CORPUS_DIR [--window W] [--stride S]
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
from pathlib import Path

import torch

from longseq import from_pretrained
from longseq.bytes.data.files import read_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a bytelm train output directory")
    parser.add_argument("--data", type=Path, required=True, help="the corpus directory it was trained on")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--window", type=int, default=None, help="bytes per window (default: the context)")
    parser.add_argument("--stride", type=int, default=None, help="bytes between window starts (default: window)")
    args = parser.parse_args()
    split = json.loads((args.run / "split.json").read_text())
    files = [args.data / name for name in split["test"]]
    stream = read_bytes(files)
    raw = bytes(stream.tolist())
    model = from_pretrained(args.run)  # the run directory is the model (eval mode)
    with torch.inference_mode():
        bpb = model.bits_per_byte(
            stream, batch_size=args.batch_size, window=args.window, stride=args.stride, progress=True
        )
    n = len(raw)
    gzip_bpb = 8 * len(gzip.compress(raw, compresslevel=9)) / n
    xz_bpb = 8 * len(lzma.compress(raw, preset=9)) / n
    summary = json.loads((args.run / "summary.json").read_text())
    print(f"held-out: {len(files)} files, {n:,} bytes; model trained {summary['steps']} steps on "
          f"{summary['files']['train']} training files of {summary['train_bytes']:,} bytes, "
          f"context {model.context}, windows of {args.window or model.context} every "
          f"{args.stride or args.window or model.context} bytes")  # fmt: skip
    print("| held-out bytes | model (bits/byte) | gzip -9 | xz -9 |")
    print("| --- | --- | --- | --- |")
    print(f"| {n:,} | {bpb:.3f} | {gzip_bpb:.3f} | {xz_bpb:.3f} |")


if __name__ == "__main__":
    main()
