"""Demo step "bytes": a tiny MBLM learns this repository's own Python sources, byte by byte.

``bytelm train`` on the files of ``core/`` and ``bytes/`` (split by file; a few held out), the bits per byte
falling as it trains; the held-out files scored next to byte frequencies and ``gzip -9`` on the same bytes; then
a sampled continuation of a held-out file with the cached decoder, checked against recomputing the whole forward
for every byte (same bytes from the same seed, and how much faster).
"""

from __future__ import annotations

import gzip
import json
import shutil
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# Read when the step runs, so a test can shorten it.
MAX_STEPS = 150
NEW_BYTES = 160
PRESET = "mblm-demo"


def corpus(out_dir: Path) -> Path:
    """A copy of the repo's core/ and bytes/ sources (a stable snapshot for the run)."""
    root = out_dir / "corpus"
    for package in ("core", "bytes"):
        for path in sorted((REPO / package).rglob("*.py")):
            target = root / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    return root


def run(out_dir: Path) -> None:
    from longseq import from_pretrained
    from longseq.bytes.cli import main
    from longseq.bytes.data.files import read_bytes

    out_dir.mkdir(parents=True, exist_ok=True)
    data = corpus(out_dir)
    run_dir = out_dir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # a rerun replaces the demo's own last run (train refuses to)
    args = ["train", "--output", str(run_dir), "--model", PRESET, "--data.path", str(data)]
    args += ["--data.batch_size", "4", "--data.test_fraction", "0.15", "--optimizer.lr", "3e-3"]
    args += ["--optimizer.warmup_steps", "10", "--trainer.max_steps", str(MAX_STEPS)]
    args += ["--trainer.val_every_n_batches", str(max(MAX_STEPS // 3, 1)), "--trainer.log_dir", str(out_dir / "logs")]
    if main(args) != 0:
        raise SystemExit("bytelm train failed")

    split = json.loads((run_dir / "split.json").read_text())
    held_out = [data / name for name in split["test"]]
    stream = read_bytes(held_out)
    model = from_pretrained(run_dir)
    with torch.inference_mode():
        bpb = model.bits_per_byte(stream)
    # Baselines: the training files' byte frequencies (add-one counts), and gzip, which sees the whole stream.
    counts = torch.bincount(read_bytes([data / name for name in split["train"]]).long(), minlength=256) + 1.0
    frequencies_bpb = -(counts / counts.sum()).log2()[stream.long()].mean().item()
    gzip_bpb = 8 * len(gzip.compress(bytes(stream.tolist()), compresslevel=9)) / stream.numel()
    print(f"held-out files ({len(held_out)}, {stream.numel():,} bytes), bits per byte: model {bpb:.3f}, byte "
          f"frequencies alone {frequencies_bpb:.3f}, gzip -9 {gzip_bpb:.3f}, a uniform guess 8.000 (longer training "
          "beats gzip: benchmarks/RESULTS.md, bytes)")  # fmt: skip

    prompt = held_out[0].read_bytes()[:96]
    ids = torch.tensor([list(prompt)])
    new = min(NEW_BYTES, model.context - ids.shape[1])
    sampling = {"do_sample": True, "temperature": 0.8}
    model.generate(ids, 8, **sampling)  # the first call pays one-off set-up costs: keep them out of the timing
    start = time.perf_counter()
    cached = model.generate(ids, new, **sampling, generator=torch.Generator().manual_seed(0))
    t_cached = time.perf_counter() - start
    start = time.perf_counter()
    full = model.generate(ids, new, **sampling, generator=torch.Generator().manual_seed(0), use_cache=False)
    t_full = time.perf_counter() - start
    assert torch.equal(cached, full), "cached generation differs from recomputation"
    text = bytes(cached[0].tolist()).decode("utf-8", errors="replace")
    print(f"a sample (temperature 0.8) continuing {held_out[0].name}; {MAX_STEPS} steps teach the look of Python "
          f"(indentation, quotes, names_with_underscores), not yet its words (prompt | generated):")  # fmt: skip
    print(f"{text[: len(prompt)]}|{text[len(prompt) :]}")
    print(f"cached decoding {new / t_cached:.0f} bytes/s vs recomputing the forward {new / t_full:.0f} bytes/s "
          f"(same bytes, {t_full / t_cached:.1f}x faster)")  # fmt: skip
