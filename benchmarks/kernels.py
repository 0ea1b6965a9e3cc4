"""Side-by-side timings of every kernel backend (and of peers when they import), as a markdown table.

    python -m benchmarks.kernels                       # CPU: reference vs torch (+ peers), medians of 5 runs
    python -m benchmarks.kernels --device cuda         # GPU: reference vs torch vs triton (+ mamba_ssm kernels)
    python -m benchmarks.kernels --ops selective_scan --repeats 3

Every candidate of a row runs on the same inputs, interleaved round-robin, and the table gives the median
seconds and the reference's median over the candidate's ("x ref", higher is faster), plus the tensors autograd
keeps for the backward ("saved MB", the memory that grows with l). Peers are never dependencies: mamba_ssm's
torch references and CUDA/Triton kernels, and mambapy's parallel scan, are timed when importable (e.g. from a
throwaway venv, see benchmarks/RESULTS.md); on the CPU a `selective_scan_cuda` stub lets mamba_ssm import.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from longseq import kernels
from longseq.kernels._testing import selective_scan_inputs, ssd_inputs

Inputs = dict[str, torch.Tensor | None]


@dataclass
class Case:
    """One op at one shape: inputs, the call per backend, and the peers' calls."""

    op: str
    shape: str
    make: Callable[[str], Inputs]
    call: Callable[[Inputs, str], object]
    peers: dict[str, Callable[[Inputs], object]] = field(default_factory=dict)
    backward: bool = True
    forward_only: set[str] = field(default_factory=set)  # candidates too slow to differentiate here


def _peer_mamba_ssm(device: str) -> types.ModuleType | None:
    """mamba_ssm's selective-scan module when importable (on the CPU behind a stub for its CUDA extension)."""
    if device == "cpu" and "selective_scan_cuda" not in sys.modules:
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")
    try:
        from mamba_ssm.ops import selective_scan_interface
    except Exception:
        return None
    return selective_scan_interface


def _mambapy_scan(inp: Inputs):
    """mambapy's selective scan (mambapy/mamba.py): materialised (b, l, d, n) decays and inputs, then pscan."""
    from mambapy.pscan import pscan

    delta = torch.nn.functional.softplus(inp["delta"] + inp["delta_bias"][:, None]).transpose(1, 2)  # (b, l, d)
    u, A = inp["u"].transpose(1, 2), inp["A"]
    B, C = inp["B"].transpose(1, 2), inp["C"].transpose(1, 2)  # (b, l, n)
    deltaA = torch.exp(delta.unsqueeze(-1) * A)
    BX = delta.unsqueeze(-1) * B.unsqueeze(2) * u.unsqueeze(-1)
    hs = pscan(deltaA, BX)
    y = (hs @ C.unsqueeze(-1)).squeeze(3) + inp["D"] * u
    return (y * torch.nn.functional.silu(inp["z"].transpose(1, 2))).transpose(1, 2)


def _scan_cases(device: str) -> list[Case]:
    def call(inp, backend):
        return kernels.selective_scan(**inp, delta_softplus=True, backend=backend)

    peers: dict[str, Callable[[Inputs], object]] = {}
    mamba = _peer_mamba_ssm(device)
    if mamba is not None:
        peers["mamba_ssm selective_scan_ref"] = lambda inp: mamba.selective_scan_ref(**inp, delta_softplus=True)
        if device == "cuda":
            peers["mamba_ssm selective_scan_fn (CUDA)"] = lambda inp: mamba.selective_scan_fn(
                **inp, delta_softplus=True
            )
    try:
        import mambapy.pscan  # noqa: F401

        peers["mambapy pscan"] = _mambapy_scan
    except Exception:
        pass
    if device == "cpu":
        try:
            from transformers.models.mamba.modeling_mamba import mamba_selective_scan

            # __wrapped__: HF's own torch path (the decorated function dispatches to mamba_ssm when it imports)
            hf_torch = getattr(mamba_selective_scan, "__wrapped__", mamba_selective_scan)

            def hf(inp):
                u, delta = inp["u"], inp["delta"]
                rest = {k: v for k, v in inp.items() if k not in ("u", "delta")}
                return hf_torch(u, delta, **rest, delta_softplus=True)

            peers["transformers mamba_selective_scan (loop)"] = hf
        except Exception:
            pass
    # on the CPU l=4096 (the goal size) is measured by `python -m benchmarks.kernels_cpu goal` without the
    # peers, whose loops make a run of this table take several minutes there
    shapes = [(1, 1536, 1024)] if device == "cpu" else [(4, 1536, 4096), (1, 1536, 16384)]
    # these loops index inside the loop, which makes autograd quadratic in l (mamba_ssm's: 66 s at l=1024 on the
    # CPU; on a GPU it would eat the GPU check's time budget at l=16384): timed forward only
    slow = {"mamba_ssm selective_scan_ref", "transformers mamba_selective_scan (loop)"}
    cases = []
    for b, d, l in shapes:

        def make(dev, b=b, d=d, l=l):
            inp = selective_scan_inputs(b, d, l, 16, device=dev)
            inp.pop("initial_state")
            return inp

        cases.append(Case("selective_scan", f"b={b} d={d} n=16 l={l}", make, call, peers, forward_only=slow))
    return cases


def _ssd_cases(device: str) -> list[Case]:
    def call(inp, backend):
        return kernels.ssd_scan(**inp, chunk_size=256, dt_softplus=True, backend=backend)

    peers: dict[str, Callable[[Inputs], object]] = {}
    if _peer_mamba_ssm(device) is not None:
        from mamba_ssm.ops.triton.ssd_combined import ssd_chunk_scan_combined_ref

        def peer_ref(inp):
            rest = {k: v for k, v in inp.items() if k not in ("x", "dt", "A", "B", "C")}
            return ssd_chunk_scan_combined_ref(
                inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], 256, **rest, dt_softplus=True
            )

        peers["mamba_ssm ssd_chunk_scan_combined_ref"] = peer_ref
    if device == "cuda":
        try:
            from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

            def peer(inp):
                return mamba_chunk_scan_combined(**inp, chunk_size=256, dt_softplus=True)

            peers["mamba_ssm mamba_chunk_scan_combined (Triton)"] = peer
        except Exception:
            pass
    b, l = (1, 2048) if device == "cpu" else (4, 8192)

    def make(dev):
        inp = ssd_inputs(b, l, 24, 64, 128, device=dev)
        inp.pop("initial_states")
        return inp

    return [Case("ssd_scan", f"b={b} l={l} h=24 p=64 n=128", make, call, peers)]


def _conv_cases(device: str) -> list[Case]:
    b, d, l = (4, 1536, 2048) if device == "cpu" else (8, 3072, 8192)

    def make(dev):
        return {
            "x": torch.randn(b, d, l, device=dev),
            "weight": torch.randn(d, 4, device=dev) / 2,
            "bias": torch.randn(d, device=dev),
        }

    def call(inp, backend):
        return kernels.causal_conv1d(**inp, activation="silu", backend=backend)

    peers: dict[str, Callable[[Inputs], object]] = {}
    if device == "cuda":
        try:
            from causal_conv1d import causal_conv1d_fn

            peers["causal_conv1d_fn (CUDA)"] = lambda inp: causal_conv1d_fn(**inp, activation="silu")
        except Exception:
            pass
    return [Case("causal_conv1d", f"b={b} d={d} l={l} w=4", make, call, peers)]


def _step_cases(device: str) -> list[Case]:
    b, d, n = (1, 1536, 16) if device == "cpu" else (16, 3072, 16)

    def make_ssu(dev):
        inp = selective_scan_inputs(b, d, 1, n, device=dev, initial_state=True)
        return {
            "state": inp["initial_state"],
            "x": inp["u"][..., 0],
            "dt": inp["delta"][..., 0],
            "A": inp["A"],
            "B": inp["B"][..., 0],
            "C": inp["C"][..., 0],
            "D": inp["D"],
            "z": inp["z"][..., 0],
            "dt_bias": inp["delta_bias"],
        }

    def call_ssu(inp, backend):
        return kernels.selective_state_update(**inp, dt_softplus=True, backend=backend)

    def make_conv(dev):
        return {
            "x": torch.randn(b, d, device=dev),
            "conv_state": torch.randn(b, d, 3, device=dev),
            "weight": torch.randn(d, 4, device=dev),
            "bias": torch.randn(d, device=dev),
        }

    def call_conv(inp, backend):
        return kernels.causal_conv1d_update(**inp, activation="silu", backend=backend)

    peers: dict[str, Callable[[Inputs], object]] = {}
    mamba = _peer_mamba_ssm(device)
    if mamba is not None:
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update, selective_state_update_ref

        peers["mamba_ssm selective_state_update_ref"] = lambda inp: selective_state_update_ref(**inp, dt_softplus=True)
        if device == "cuda":
            peers["mamba_ssm selective_state_update (Triton)"] = lambda inp: selective_state_update(
                **inp, dt_softplus=True
            )
    return [
        Case("selective_state_update", f"b={b} d={d} n={n}", make_ssu, call_ssu, peers, backward=False),
        Case("causal_conv1d_update", f"b={b} d={d} w=4", make_conv, call_conv, backward=False),
    ]


def _fft_cases(device: str) -> list[Case]:
    h = 768
    shapes = [(1, 4096, 4096), (1, 4097, 4097), (1, 4096, 16)] if device == "cpu" else [(8, 16384, 16384)]
    cases = []
    for b, l, lk in shapes:

        def make(dev, b=b, l=l, lk=lk):
            return {
                "u": torch.randn(b, h, l, device=dev),
                "k": torch.randn(h, lk, device=dev) / lk**0.5,
                "D": torch.randn(h, device=dev),
            }

        cases.append(
            Case(
                "fftconv",
                f"b={b} h={h} l={l} lk={lk}",
                make,
                lambda inp, backend: kernels.fftconv(**inp, backend=backend),
            )
        )
    b, d, l = (1, 768, 4096) if device == "cpu" else (8, 768, 16384)

    def make_hyena(dev):
        return {
            "u": torch.randn(b, 3 * d, l, device=dev),
            "weight": torch.randn(3 * d, 3, device=dev) / 2,
            "bias": torch.randn(3 * d, device=dev),
            "k": torch.randn(d, l, device=dev) / l**0.5,
            "D": torch.randn(d, device=dev),
        }

    cases.append(
        Case(
            "hyena_conv",
            f"b={b} d={d} l={l}",
            make_hyena,
            lambda inp, backend: kernels.hyena_conv(**inp, backend=backend),
        )
    )
    return cases


def _norm_cases(device: str) -> list[Case]:
    rows, d = (4096, 2560) if device == "cpu" else (32768, 4096)

    def make(dev):
        return {
            "x": torch.randn(rows, d, device=dev),
            "residual": torch.randn(rows, d, device=dev),
            "weight": torch.ones(d, device=dev),
        }

    def call(inp, backend):
        return kernels.add_norm(**inp, residual_in_fp32=True, backend=backend)

    peers: dict[str, Callable[[Inputs], object]] = {}
    if device == "cuda":
        try:
            from mamba_ssm.ops.triton.layer_norm import rms_norm_fn

            peers["mamba_ssm rms_norm_fn (Triton)"] = lambda inp: rms_norm_fn(
                inp["x"], inp["weight"], None, residual=inp["residual"], prenorm=True, residual_in_fp32=True, eps=1e-5
            )
        except Exception:
            pass
    return [Case("add_norm", f"rows={rows} d={d}", make, call, peers)]


OPS = {
    "selective_scan": _scan_cases,
    "ssd_scan": _ssd_cases,
    "causal_conv1d": _conv_cases,
    "steps": _step_cases,
    "fftconv": _fft_cases,
    "add_norm": _norm_cases,
}


def _run_once(fn: Callable[[Inputs], object], inputs: Inputs, backward: bool, device: str) -> tuple[float, int]:
    """Seconds for one call (and its backward) and the bytes autograd saved for the backward."""
    leaves = {
        k: (v.detach().clone().requires_grad_(backward and v.is_floating_point()) if v is not None else None)
        for k, v in inputs.items()
    }
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(leaves)
    if backward:
        first = out[0] if isinstance(out, tuple) else out
        first.float().sum().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, saved


def run_case(case: Case, device: str, repeats: int) -> list[tuple[str, str, str, str, float, float, float]]:
    """Rows (op, shape, mode, candidate, median s, x ref, saved MB) for one case, candidates interleaved."""
    backends = ["reference", "torch"] + (["triton"] if device == "cuda" else [])
    candidates = {name: (lambda inp, backend=name: case.call(inp, backend)) for name in backends}
    candidates.update(case.peers)
    inputs = case.make(device)
    rows = []
    for backward in (False, True) if case.backward else (False,):
        times = {name: [] for name in candidates if not (backward and name in case.forward_only)}
        saved: dict[str, int] = {}
        for name in list(times):  # warm-up (Triton compiles, caches fill)
            try:
                _run_once(candidates[name], inputs, backward, device)
            except Exception as err:  # a peer without this mode or device is left out, with the reason
                print(f"  {case.op} {name}: left out ({type(err).__name__}: {err})", file=sys.stderr)
                times.pop(name)
        for _ in range(repeats):
            for name in list(times):
                seconds, saved[name] = _run_once(candidates[name], inputs, backward, device)
                times[name].append(seconds)
        ref = statistics.median(times["reference"])
        for name, ts in times.items():
            med = statistics.median(ts)
            mode = "fwd+bwd" if backward else "fwd"
            rows.append((case.op, case.shape, mode, name, med, ref / med, saved[name] / 2**20 if backward else 0.0))
        print(f"  done {case.op} {case.shape} {'fwd+bwd' if backward else 'fwd'}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {', '.join(OPS)}")
    args = parser.parse_args(argv)
    ops = args.ops.split(",")
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        parser.error(f"unknown ops {', '.join(unknown)}; expected some of {', '.join(OPS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU")
    torch.manual_seed(0)
    machine = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()}-thread CPU"
    print(f"machine: {machine}, torch {torch.__version__}; median of {args.repeats} interleaved runs\n")
    print("| op | shape | mode | backend | median s | x ref | saved MB |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: |")
    for op in ops:
        for case in OPS[op](args.device):
            for row in run_case(case, args.device, args.repeats):
                name, shape, mode, cand, med, ratio, mb = row
                saved = f"{mb:.0f}" if mode == "fwd+bwd" else ""
                print(f"| {name} | {shape} | {mode} | {cand} | {med:.4g} | {ratio:.2f} | {saved} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
