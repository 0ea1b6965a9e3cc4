"""``dna``: embed sequence files, convert official checkpoints, pretrain and fine-tune (Lightning).

Each command is a plain function (callable from Python and tests); `core.cli.run` parses flags and config
files with jsonargparse and turns bad input into one line on stderr and exit status 2. Heavy imports happen
inside the commands, so ``dna --help`` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from core.cli import run

Pooling = Literal["mean", "max", "last", "none"]


def _device(name: str):
    import torch

    from core.io import InputError

    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but CUDA is not available")
    return device


def embed(
    input: Path,
    output: Path,
    *,
    model: str,
    pooling: Pooling = "mean",
    window: int | None = None,
    stride: int | None = None,
    rc: bool | None = None,
    layer: int = -1,
    batch_size: int = 16,
    device: str = "cpu",
    bed: Path | None = None,
    soft_masked: Literal["upper", "n"] = "upper",
    ambiguous: Literal["n", "error"] = "n",
) -> None:
    """Embed the sequences of a FASTA, FASTQ or GenBank file (gzipped or not) into an .npz.

    Records longer than the window are embedded in windows. The .npz holds ``ids`` and ``lengths``; pooled
    outputs add ``embeddings`` (one row per window), ``record``, ``start``, ``end`` and ``record_embeddings``
    (one row per record); ``--pooling none`` adds ``emb_<i>`` (length, d) per record. Written atomically.

    Args:
        input: the sequence file (with --bed: the reference FASTA).
        output: the .npz to write.
        model: a checkpoint directory (ours, HyenaDNA HF or original, Caduceus HF) or a preset name.
        pooling: mean, max or last over each window, or none for one vector per nucleotide.
        window: window length (default: the model's context length).
        stride: step between windows (default: the window; smaller overlaps, larger samples).
        rc: average with the reverse complement strand (default: on for Caduceus-Ph, the post-hoc conjoining
            it was trained for; Caduceus-PS is RC-invariant by construction).
        layer: hidden states to take: -1 the final ones, 0 the token embeddings, k after block k.
        batch_size: windows per forward pass.
        device: cpu or cuda.
        bed: BED intervals over the input FASTA: embed those intervals (minus strand reverse-complemented).
        soft_masked: lowercase bases read as bases (upper) or as N (n).
        ambiguous: IUPAC ambiguity codes become N (n) or are refused (error).
    """
    import time

    import torch
    from tqdm import tqdm

    import genomics
    from core.io import InputError, atomic_output
    from genomics.data.bed import bed_records
    from genomics.data.fasta import read_records
    from genomics.data.tokenizer import DNATokenizer
    from genomics.embed import embed_records, write_embeddings
    from genomics.models import PRESETS
    from genomics.models.caduceus import Caduceus

    if output.is_dir():
        raise InputError(f"{output} is a directory; give a file name for the .npz")
    if batch_size < 1:
        raise InputError(f"--batch_size must be positive; got {batch_size}")
    with atomic_output(output) as tmp:
        dev = _device(device)
        net = genomics.from_pretrained(model).to(dev).eval()
        if model in PRESETS and not Path(model).exists():
            print(f"note: {model} is a preset with random weights", file=sys.stderr)
        context = net.context_length
        if window is None:
            if context is None:
                raise InputError(f"{model} does not record the length it was trained at; pass --window")
            window = context
        if window < 1 or (stride is not None and stride < 1):
            raise InputError(f"--window and --stride must be positive; got {window}, {stride}")
        if context is not None and window > context:
            raise InputError(f"--window {window} is longer than the model's context ({context})")
        use_rc = rc if rc is not None else isinstance(net, Caduceus) and not net.config.rcps
        records = bed_records(input, bed) if bed is not None else read_records(input)
        tokenizer = DNATokenizer(soft_masked=soft_masked, ambiguous=ambiguous)
        start = time.perf_counter()
        with tqdm(unit="bp", unit_scale=True, desc="embedding", disable=None) as bar, torch.inference_mode():
            results = embed_records(
                net,
                records,
                window=window,
                stride=stride or window,
                pooling=pooling,
                rc=use_rc,
                layer=layer,
                batch_size=batch_size,
                tokenizer=tokenizer,
                device=dev,
                progress=bar,
            )
            n_records, bases = write_embeddings(tmp, results, pooling)
        seconds = time.perf_counter() - start
    print(f"embedded {n_records} record(s), {bases:,} bases in {seconds:.1f} s ({bases / seconds:,.0f} bases/s)")


def convert(source: str, output: Path, *, filter_shift: float = 0.05) -> None:
    """Convert a checkpoint to our format (config.json + model.safetensors).

    Args:
        source: a HyenaDNA HF or original (Lightning) directory, a Caduceus HF directory, ours, or a preset.
        output: the directory to create (it must not exist, or be empty).
        filter_shift: HyenaDNA's filter modulation shift (0.05, as in the released code).
    """
    import os
    import shutil

    import genomics
    from core.io import InputError

    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"{output} already exists; remove it or choose another directory")
    if not output.parent.is_dir() or not os.access(output.parent, os.W_OK):
        raise InputError(f"cannot create {output}: {output.parent} is not a writable directory")
    model = genomics.from_pretrained(source, filter_shift=filter_shift)
    tmp = output.parent / f".{output.name}.tmp-{os.getpid()}"
    try:
        model.save_pretrained(tmp)
        if output.exists():
            output.rmdir()
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {output} ({type(model).__name__}, {params:,} parameters)")


def main(argv: list[str] | None = None) -> int:
    return run({"embed": embed, "convert": convert}, argv, prog="dna")


if __name__ == "__main__":
    sys.exit(main())
