"""The CPU goals of the kernels, measured: the selective scan against a plain per-step loop, its memory against
the sequence length, and the tuning sweeps behind the torch backend's constants.

    python -m benchmarks.kernels_cpu goal      # scan fwd+bwd at b=1 d=1536 n=16 l=4096: loop vs torch, errors
    python -m benchmarks.kernels_cpu memory    # peak memory of one fwd+bwd above the inputs, l = 1024..4096
    python -m benchmarks.kernels_cpu tune      # scan chunk length, SSD chunk size, FFT size and transform

The loop is `selective_scan_ref` (backend="reference"): one step per `unbind`-ed time step, plain autograd.
Timings are medians of candidates run interleaved on the same inputs; memory is the peak resident set of a
fresh process (Linux VmHWM, reset after the inputs exist), so each figure is what one call really costs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from longseq import kernels
from longseq.kernels._testing import selective_scan_inputs, ssd_inputs
from longseq.kernels.fftconv.torch_fftconv import fast_fft_size
from longseq.kernels.selective_scan.torch_scan import chunk_length, selective_scan_torch
from longseq.kernels.ssd.chunked import ssd_scan_chunked

Inputs = dict[str, torch.Tensor | None]


def _leaves(inputs: Inputs) -> Inputs:
    return {
        k: None if v is None else v.detach().clone().requires_grad_(v.is_floating_point()) for k, v in inputs.items()
    }


def _fwd_bwd(fn: Callable[[Inputs], torch.Tensor], inputs: Inputs) -> tuple[float, torch.Tensor, Inputs]:
    """Seconds for fn(inputs) and the backward of a fixed weighting of its output; the output and the leaves."""
    leaves = _leaves(inputs)
    start = time.perf_counter()
    out = fn(leaves)
    forward = time.perf_counter() - start
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))  # not timed
    start = time.perf_counter()
    (out * weight).sum().backward()
    return forward + time.perf_counter() - start, out.detach(), leaves


def _interleaved(candidates: dict[str, Callable[[Inputs], torch.Tensor]], inputs: Inputs, repeats: int):
    """Median fwd+bwd seconds per candidate (one warm-up each, then ``repeats`` rounds in turn)."""
    for fn in candidates.values():
        _fwd_bwd(fn, inputs)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(repeats):
        for name, fn in candidates.items():
            times[name].append(_fwd_bwd(fn, inputs)[0])
        print(
            f"  round {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()), file=sys.stderr
        )
    return {name: statistics.median(ts) for name, ts in times.items()}


def _scan_inputs(l: int) -> Inputs:
    inp = selective_scan_inputs(1, 1536, l, 16)
    inp.pop("initial_state")
    return inp


def _scan(backend: str) -> Callable[[Inputs], torch.Tensor]:
    return lambda inp: kernels.selective_scan(**inp, delta_softplus=True, backend=backend)


def _rel(ref: torch.Tensor, out: torch.Tensor) -> tuple[float, float]:
    diff = (ref.double() - out.double()).abs()
    return diff.max().item(), (diff.norm() / ref.double().norm()).item()


def goal(l: int, repeats: int) -> None:
    """The issue's CPU goal: torch backend vs the per-step loop, fwd+bwd, with the errors at this size."""
    inputs = _scan_inputs(l)
    med = _interleaved({"loop (reference)": _scan("reference"), "torch": _scan("torch")}, inputs, repeats)
    print(f"selective_scan fwd+bwd, b=1 d=1536 n=16 l={l}, float32, median of {repeats} interleaved runs\n")
    print("| backend | median s | speed-up vs loop |\n| --- | ---: | ---: |")
    for name, s in med.items():
        print(f"| {name} | {s:.3f} | {med['loop (reference)'] / s:.2f} |")
    _, y_ref, g_ref = _fwd_bwd(_scan("reference"), inputs)
    _, y, g = _fwd_bwd(_scan("torch"), inputs)
    print("\n| tensor | max abs diff | relative RMS diff |\n| --- | ---: | ---: |")
    for name, r, o in [("out", y_ref, y)] + [(f"d{k}", g_ref[k].grad, g[k].grad) for k in g_ref]:
        mx, rel = _rel(r, o)
        print(f"| {name} | {mx:.2e} | {rel:.2e} |")


def _peak_child(backend: str, l: int) -> None:
    """(In a fresh process) peak resident MiB of one scan fwd+bwd above the inputs, and the outputs' MiB."""
    torch.manual_seed(0)
    _fwd_bwd(_scan(backend), _scan_inputs(8))  # first-call set-up (thread pools, allocator) outside the figure
    inputs = _leaves(_scan_inputs(l))
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current resident set
        f.write("5")
    base = _status_kib("VmRSS")
    out = kernels.selective_scan(**inputs, delta_softplus=True, backend=backend)
    out.sum().backward()
    peak = _status_kib("VmHWM")
    # what any implementation must hold at the end: the output and one gradient per input
    must = out.numel() * 4 + sum(v.numel() * 4 for v in inputs.values() if v is not None)
    print(json.dumps({"peak_mib": (peak - base) / 1024, "outputs_mib": must / 2**20}))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory(lengths: list[int]) -> None:
    """Peak memory of one fwd+bwd above the inputs, per backend and length, each in a fresh process; then the
    growth per time step between the shortest and the longest length, also in (b, d) float32 columns."""
    print("selective_scan fwd+bwd, b=1 d=1536 n=16, float32: peak resident memory above the inputs (MiB)\n")
    print("| l | outputs + grads | loop (reference) | torch |\n| ---: | ---: | ---: | ---: |")
    rows = {}
    for l in lengths:
        res = {}
        for backend in ("reference", "torch"):
            cmd = [sys.executable, "-m", "benchmarks.kernels_cpu", "_peak", backend, str(l)]
            res[backend] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        rows[l] = (res["reference"]["outputs_mib"], res["reference"]["peak_mib"], res["torch"]["peak_mib"])
        print(f"| {l} | " + " | ".join(f"{v:.0f}" for v in rows[l]) + " |", flush=True)
    lo, hi = min(lengths), max(lengths)
    column_kib = 1536 * 4 / 1024
    print(f"\ngrowth per time step from l={lo} to l={hi} (KiB; in (b, d) float32 columns of {column_kib:.0f} KiB)\n")
    print("| | outputs + grads | loop (reference) | torch |\n| --- | ---: | ---: | ---: |")
    growth = [(h - l) * 1024 / (hi - lo) for l, h in zip(rows[lo], rows[hi])]
    print("| KiB per step | " + " | ".join(f"{g:.0f}" for g in growth) + " |")
    print("| columns per step | " + " | ".join(f"{g / column_kib:.1f}" for g in growth) + " |")


def _fft(n: int, real: bool) -> Callable[[Inputs], torch.Tensor]:
    """fftconv (without the D skip) at FFT size n, by real or complex transforms."""

    def fn(inp):
        u, k = inp["u"], inp["k"]
        l = u.shape[-1]
        if real:
            return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :l]
        return torch.fft.ifft(torch.fft.fft(u, n=n) * torch.fft.fft(k, n=n), n=n).real[..., :l]

    return fn


def _direct(inp):
    k = inp["k"]
    return F.conv1d(F.pad(inp["u"], (k.shape[-1] - 1, 0)), k.flip(-1).unsqueeze(1), groups=k.shape[0])


def tune(repeats: int) -> None:
    """Sweeps behind the torch backend's constants; each row's candidates run interleaved."""
    print(f"fwd+bwd medians of {repeats} interleaved runs, float32\n")
    inputs = _scan_inputs(4096)
    default = chunk_length(1, 1536, 16)
    chunks = sorted({16, 32, default, 64, 128, 256})
    cands = {
        f"T={T}": (
            lambda inp, T=T: selective_scan_torch(
                **inp, delta_softplus=True, return_last_state=False, initial_state=None, chunk_size=T
            )
        )
        for T in chunks
    }
    med = _interleaved(cands, inputs, repeats)
    print(f"selective_scan torch backend, b=1 d=1536 n=16 l=4096: steps per chunk (default T={default})\n")
    print("| chunk | median s | vs default |\n| --- | ---: | ---: |")
    for name, s in med.items():
        print(f"| {name} | {s:.3f} | {s / med[f'T={default}']:.2f} |")

    inputs = ssd_inputs(1, 4096, 24, 64, 128)
    inputs.pop("initial_states")
    cands = {
        f"chunk={T}": (lambda inp, T=T: ssd_scan_chunked(**inp, chunk_size=T, dt_softplus=True))
        for T in (32, 64, 128, 256)
    }
    med = _interleaved(cands, inputs, repeats)
    print("\nssd_scan torch backend (chunked), b=1 l=4096 h=24 p=64 n=128: chunk size\n")
    print("| chunk | median s | vs 64 |\n| --- | ---: | ---: |")
    for name, s in med.items():
        print(f"| {name} | {s:.3f} | {s / med['chunk=64']:.2f} |")

    print("\nfftconv core (no D skip), b=1 h=768: FFT size and transform; direct depthwise conv for short filters\n")
    print("| l | lk | candidate | FFT size | median s | vs chosen |\n| ---: | ---: | --- | ---: | ---: | ---: |")
    for l, lk in ((4096, 4096), (4097, 4097), (4096, 8), (4096, 16), (4096, 32), (4096, 64)):
        inp = {"u": torch.randn(1, 768, l), "k": torch.randn(768, lk) / lk**0.5}
        smooth = fast_fft_size(l + lk - 1)
        sizes = {
            "rfft 2l (reference)": (2 * l, True),
            "rfft next power of 2": (2 ** math.ceil(math.log2(l + lk - 1)), True),
            "rfft 5-smooth": (smooth, True),
            "complex fft 5-smooth": (smooth, False),
        }
        cands = {name: _fft(n, real) for name, (n, real) in sizes.items()}
        if lk <= 64:  # O(l lk): 20-30 s per call at lk = l = 4096
            cands["direct conv"] = _direct
        med = _interleaved(cands, inp, repeats)
        chosen = "rfft 5-smooth"
        for name, s in med.items():
            n = sizes[name][0] if name in sizes else ""
            mark = " (chosen)" if name == chosen else ""
            print(f"| {l} | {lk} | {name}{mark} | {n} | {s:.4f} | {s / med[chosen]:.2f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels_cpu", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("goal")
    p.add_argument("--l", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    p = sub.add_parser("memory")
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096])
    p = sub.add_parser("tune")
    p.add_argument("--repeats", type=int, default=3)
    p = sub.add_parser("_peak")
    p.add_argument("backend")
    p.add_argument("l", type=int)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.cmd != "_peak":
        print(f"machine: {torch.get_num_threads()}-thread CPU, torch {torch.__version__}\n")
    if args.cmd == "goal":
        goal(args.l, args.repeats)
    elif args.cmd == "memory":
        memory(args.lengths)
    elif args.cmd == "tune":
        tune(args.repeats)
    else:
        _peak_child(args.backend, args.l)
    return 0


if __name__ == "__main__":
    sys.exit(main())
