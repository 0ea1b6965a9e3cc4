"""The CPU performance goals of issue 21, each a ratio measured within this one run and printed against its goal.

    python -m benchmarks.cpu_goals                      # all four (about 7 minutes on the 2-core machine)
    python -m benchmarks.cpu_goals --only embed scan    # a subset: embed, scan, startup, threads

- embed: `dna embed` end to end (a fresh process on a random-sequence FASTA, the rate the command prints), in
  model FLOP/s over the fp32 matmul FLOP/s measured in this run (the best of the measurements taken between the
  other figures), in float32 (the default) and with `--precision bf16-mixed` (the issue's optional bfloat16; its
  FLOPs are counted the same). Goal: >= 0.4 for HyenaDNA tiny-1k and small-32k, >= 0.25 for Caduceus-PS and -Ph.
  The same ratio for `model.embed` alone, in this process (default allocator), shows what the command adds.
  Model FLOPs per base (`model_flops`): every Linear (2 in out per token), each Hyena long convolution as its two
  real FFTs and the spectrum product (5 n log2 n + 6 (n / 2 + 1) per channel, n the FFT size), each selective
  scan as 7 per state element and token (delta A, exp, delta u B, the recurrence's multiply-add, C h's
  multiply-add). Elementwise work outside those (norms, gates, activations) is not counted: it is the overhead
  the ratio measures. Caduceus-Ph runs the reverse complement too, as `dna embed` does by default (counted).
  Caduceus is counted as published, each direction of a BiMamba with its own in_proj and out_proj (3.40 MFLOP
  per base for the 1k-d118 presets): the tied BiMamba computes the same function with one of each (1.64 MFLOP
  per base executed), so for Caduceus the ratio is throughput in the architecture's FLOPs, as MFU counts them.
- scan: the selective scan forward + backward at b=1 d=1536 n=16 l=4096, the torch backend against the per-step
  loop (`selective_scan_ref`), interleaved medians. Goal >= 12x. Also its distance from the arithmetic floor:
  the time over (FLOPs / the matmul rate), FLOPs counted as in `SCAN_FLOPS_PER_ELEMENT`.
- startup: `dna --help`, `tts --help`, `bytelm --help`, `vision --help` (as `python -m longseq.<pkg>.cli`)
  against `python -c "import torch"`, interleaved, medians. Goal <= 1.3x each.
- threads: LocalVim-T at 1024 px, one forward with 2 threads against one with 1, in one process, with the memory
  reuse of the inference commands (`core.memory.reuse_freed_memory`). Goal >= 1.3x.

Timings on a shared machine are noisy: the load average is printed before and after each part.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch

PARTS = ("embed", "scan", "startup", "threads")
PRECISIONS = ("32-true", "bf16-mixed")  # `dna embed --precision`: the default, and bfloat16 autocast
# (preset, bases to embed, batch size): enough batches that the first one's warm-up (about 0.3 s: the heap's first
# pages) is a small part of the rate, as in the whole-genome run; tiny-1k embeds 1 Mbp (64 batches).
# small-32k takes batches of 2 windows (16 would hold 2 GB per activation).
EMBED_RUNS = (
    ("hyenadna-tiny-1k", 16 * 1026 * 64, 16, 0.4),
    ("hyenadna-small-32k", 32770 * 8, 2, 0.4),
    ("caduceus-ps-1k-d118", 1024 * 16 * 4, 16, 0.25),
    ("caduceus-ph-1k-d118", 1024 * 16 * 4, 16, 0.25),
)
# Forward: delta A, exp, (delta u) B, h = dA h + x (2), y += C h (2) = 7 per (t, d, n). Backward: the same 5 to
# recompute the chunk's states, the adjoint's multiply-add (2), C dy (1), and two per product for G B, G delta u,
# H dy, dA G H (2 multiplies), its product with delta and A (2 each): 20. Elementwise terms in (t, d) are left out.
SCAN_FLOPS_PER_ELEMENT = 27
HELP_COMMANDS = {
    "dna": "longseq.genomics.cli",
    "tts": "longseq.speech.cli",
    "bytelm": "longseq.bytes.cli",
    "vision": "longseq.vision.cli",
}
# (goal, what, value given the run's best matmul rate, target: ">= x", "<= x" or "" for a diagnostic)
rows: list[tuple[str, str, Callable[[float], float], str]] = []


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """fp32 matmul FLOP/s at the current thread count: median of ``repeats`` (size x size) products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


class Peak:
    """The best matmul rate seen in this run (measured again between parts, so a busy moment does not set it)."""

    def __init__(self):
        self.rates: list[float] = []

    def measure(self) -> float:
        self.rates.append(matmul_rate())
        return self.rates[-1]

    @property
    def value(self) -> float:
        return max(self.rates)


def model_flops(model: torch.nn.Module, ids: torch.Tensor, *, rc: bool) -> float:
    """Model FLOPs (module docstring) of embedding ``ids`` (b, l), counted by hooks during one embed call."""
    from longseq.core.hyena import HyenaOperator
    from longseq.core.ssm import Mamba
    from longseq.genomics.embed import embed_windows
    from longseq.genomics.models.caduceus import BiMamba
    from longseq.kernels.fftconv.torch_fftconv import fft_size

    total = 0.0

    def linear(module, inputs, _):
        nonlocal total
        total += 2 * module.in_features * module.out_features * inputs[0].numel() / module.in_features

    def hyena(module, inputs, _):
        nonlocal total
        b, l, d = inputs[0].shape
        n = fft_size(l, module.filter_fn.support(l))
        total += b * d * (5 * n * math.log2(n) + 6 * (n // 2 + 1))

    def mamba(module, inputs, _):
        nonlocal total
        b, l, _ = inputs[0].shape
        total += 7 * b * l * module.d_inner * module.d_state

    hooks = []
    for m in model.modules():
        hook = {torch.nn.Linear: linear, HyenaOperator: hyena, Mamba: mamba}.get(type(m))
        if hook is not None:
            hooks.append(m.register_forward_hook(hook))
    # the architecture as published: both directions' projections (module docstring)
    untied = mock.patch.object(BiMamba, "_projections_tied", lambda self: False)
    try:
        with untied:
            embed_windows(model, ids, torch.full((ids.shape[0],), ids.shape[1]), rc=rc, layer=-1)
    finally:
        for h in hooks:
            h.remove()
    return total


def embed(peak: Peak) -> None:
    from longseq.core.registry import from_pretrained
    from longseq.genomics.models.caduceus import Caduceus

    print(f"\n## embed ({load()})", flush=True)
    gen = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for preset, bases, batch, target in EMBED_RUNS:
            model = from_pretrained(preset).eval()
            window = model.context_length
            rc = isinstance(model, Caduceus) and not model.config.rcps
            ids = torch.randint(7, 11, (batch, window), generator=gen)  # A, C, G, T
            with torch.inference_mode():
                per_base = model_flops(model, ids, rc=rc) / ids.numel()
                rate_model = _model_rate(model, ids, rc)
            del model
            fasta = Path(tmp) / "random.fa"
            seq = "".join("ACGT"[i] for i in torch.randint(0, 4, (bases,), generator=gen).tolist())
            fasta.write_text(">random\n" + "\n".join(seq[i : i + 80] for i in range(0, bases, 80)) + "\n")
            rates = {}
            for precision in PRECISIONS:
                argv = [sys.executable, "-m", "longseq.genomics.cli", "embed", "--input", str(fasta)]
                argv += ["--output", str(Path(tmp) / "out.npz"), "--model", preset, "--batch_size", str(batch)]
                proc = subprocess.run([*argv, "--precision", precision], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"dna embed failed for {preset}: {proc.stderr.strip()[-500:]}")
                rates[precision] = float(re.search(r"\(([\d,]+) bases/s\)", proc.stdout).group(1).replace(",", ""))
            matmul = peak.measure()
            measured = {f"dna embed {p}": r for p, r in rates.items()} | {"model.embed alone": rate_model}
            for what, rate in measured.items():
                ratio = rate * per_base / peak.value
                print(
                    f"{preset:22s} {what:22s} {rate:>9,.0f} bases/s x {per_base / 1e6:5.2f} MFLOP/base = "
                    f"{rate * per_base / 1e9:6.1f} GFLOP/s; matmul now {matmul / 1e9:.0f}, best "
                    f"{peak.value / 1e9:.0f} GFLOP/s -> {ratio:.3f}",
                    flush=True,
                )
            for precision, rate in rates.items():
                what = f"{preset}: `dna embed{'' if precision == '32-true' else ' --precision ' + precision}`"
                flops = rate * per_base
                rows.append(("embed", f"{what} FLOP/s / fp32 matmul FLOP/s", lambda p, f=flops: f / p, f">= {target}"))
            flops_model = rate_model * per_base
            rows.append(("(embed)", f"{preset}: `model.embed` alone, float32", lambda p, f=flops_model: f / p, ""))


def _model_rate(model, ids: torch.Tensor, rc: bool, repeats: int = 3) -> float:
    """Bases per second of `embed_windows` on one batch: one warm-up call, then the median of ``repeats``."""
    from longseq.genomics.embed import embed_windows

    lengths = torch.full((ids.shape[0],), ids.shape[1])
    embed_windows(model, ids, lengths, rc=rc, layer=-1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        embed_windows(model, ids, lengths, rc=rc, layer=-1)
        times.append(time.perf_counter() - start)
    return ids.numel() / statistics.median(times)


def scan(peak: Peak, repeats: int) -> None:
    from benchmarks.kernels_cpu import _interleaved, _scan, _scan_inputs

    print(f"\n## scan ({load()})", flush=True)
    l, d, n = 4096, 1536, 16
    torch.manual_seed(0)
    med = _interleaved({"loop": _scan("reference"), "torch": _scan("torch")}, _scan_inputs(l), repeats)
    matmul = peak.measure()
    speedup = med["loop"] / med["torch"]
    floor = SCAN_FLOPS_PER_ELEMENT * l * d * n / peak.value
    print(
        f"fwd+bwd b=1 d={d} n={n} l={l}: loop {med['loop']:.3f} s, torch {med['torch']:.3f} s ({speedup:.2f}x); "
        f"floor {SCAN_FLOPS_PER_ELEMENT} FLOP x {l * d * n / 1e6:.0f} M elements at {peak.value / 1e9:.0f} GFLOP/s "
        f"(now {matmul / 1e9:.0f}) = {floor * 1e3:.1f} ms: torch is {med['torch'] / floor:.0f}x the floor",
        flush=True,
    )
    rows.append(("scan", "selective scan fwd+bwd: per-step loop time / torch time", lambda p: speedup, ">= 12"))
    flops = SCAN_FLOPS_PER_ELEMENT * l * d * n
    rows.append(
        ("(scan)", "torch time / arithmetic floor (FLOPs / matmul rate)", lambda p: med["torch"] * p / flops, "")
    )


def startup(repeats: int) -> None:
    print(f"\n## startup ({load()})", flush=True)
    commands = {"import torch": [sys.executable, "-c", "import torch"]}
    commands |= {f"{name} --help": [sys.executable, "-m", module, "--help"] for name, module in HELP_COMMANDS.items()}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["import torch"])
    for name, ts in times.items():
        print(f"{name:16s} {statistics.median(ts):6.2f} s  ({statistics.median(ts) / base:.2f}x)", flush=True)
        if name != "import torch":
            ratio = statistics.median(ts) / base
            rows.append(("startup", f"`{name}` / `python -c 'import torch'`", lambda p, r=ratio: r, "<= 1.3"))


def threads(repeats: int) -> None:
    import timm

    import longseq.vision.local_mamba  # noqa: F401  (registers the models with timm)
    from longseq.core.memory import reuse_freed_memory

    reuse_freed_memory()  # as `vision eval-classifier` does (the last part: it stays set for this process)

    print(f"\n## threads ({load()})", flush=True)
    before = torch.get_num_threads()
    model = timm.create_model("localvim_tiny", img_size=1024).eval()
    image = torch.randn(1, 3, 1024, 1024)
    times: dict[int, list[float]] = {1: [], 2: []}
    with torch.inference_mode():
        for r in range(repeats + 1):
            for count in (1, 2):
                torch.set_num_threads(count)
                start = time.perf_counter()
                model(image)
                if r > 0:  # the first round warms up both settings
                    times[count].append(time.perf_counter() - start)
    torch.set_num_threads(before)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"LocalVim-T 1024 px forward: 1 thread {one:.2f} s, 2 threads {two:.2f} s ({one / two:.2f}x)", flush=True)
    rows.append(("threads", "LocalVim-T 1024 px: 1-thread time / 2-thread time", lambda p: one / two, ">= 1.3"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_goals", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the interleaved timings")
    args = parser.parse_args(argv)
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, torch {torch.__version__}")
    peak = Peak()
    print(f"fp32 matmul 2048^3: {peak.measure() / 1e9:.0f} GFLOP/s ({load()})", flush=True)
    if "embed" in args.only:
        embed(peak)
    if "scan" in args.only:
        scan(peak, args.repeats)
    if "startup" in args.only:
        startup(args.repeats)
    if "threads" in args.only:
        threads(max(1, args.repeats - 1))
    print(f"\nbest fp32 matmul rate in this run: {peak.value / 1e9:.0f} GFLOP/s ({load()})\n")
    print("| goal | measured | value | target | met |\n| --- | --- | ---: | --- | --- |")
    for goal, what, value_of, target in rows:
        value = value_of(peak.value)
        met = ""
        if target:
            bound = float(target.split()[1])
            met = "yes" if (value >= bound if target.startswith(">=") else value <= bound) else "**no**"
        print(f"| {goal} | {what} | {value:.2f} | {target} | {met} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
