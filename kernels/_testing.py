"""Helpers shared by the kernel tests, the GPU check and the benchmarks: a tolerant comparison (FLA style),
realistic random inputs per op, and outputs plus input gradients of one call.

Nothing here is imported by the public ops.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
from collections.abc import Callable, Iterator, Sequence

import torch

# rel-RMS bound per dtype for "same function, different summation order"
# Relative RMS error allowed between two formulations. float32: sums over hundreds of steps in another order
# (chunked vs sequential, Triton vs torch) reach ~1.3e-5 on some fresh random inputs; a wrong kernel is off by
# 1e-2 or more.
RATIO = {torch.float64: 1e-9, torch.float32: 3e-5, torch.float16: 5e-3, torch.bfloat16: 2e-2}


def has_triton() -> bool:
    """Whether Triton kernels can be tested here (on the CPU they run through the interpreter)."""
    return importlib.util.find_spec("triton") is not None


@contextlib.contextmanager
def tf32_dots() -> Iterator[None]:
    """Inside, the interpreter's tl.dot runs as an H100 runs it on float32 operands by default: TF32, whose
    tensor cores read 10 of the 23 mantissa bits (truncated: a relative error up to 2^-10), accumulating in
    float32. Needs TRITON_INTERPRET=1 (the interpreter's dot is what it replaces)."""
    import numpy as np
    from triton.runtime import interpreter

    builder = type(interpreter.interpreter_builder)
    real_dot = builder.create_dot

    def tf32(handle):
        data = handle.data
        if data.dtype == np.float32:
            data = (data.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)
        return interpreter.TensorHandle(data, handle.dtype)

    def dot(self, a, b, acc, *args):
        return real_dot(self, tf32(a), tf32(b), acc, *args)

    builder.create_dot = dot
    try:
        yield
    finally:
        builder.create_dot = real_dot


def assert_close(name: str, ref: torch.Tensor, out: torch.Tensor, *, ratio: float, atol: float = 0.0) -> None:
    """Pass when max |ref - out| <= atol, else when the relative RMS error ||ref - out|| / ||ref|| < ratio.

    A NaN or inf in ``out`` where ``ref`` is finite always fails (an unwritten, NaN-poisoned element).
    """
    if ref.shape != out.shape:
        raise AssertionError(f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    ref, out = ref.detach().double().cpu(), out.detach().double().cpu()
    bad = torch.isfinite(ref) & ~torch.isfinite(out)
    if bad.any():
        raise AssertionError(f"{name}: {int(bad.sum())} non-finite values where the reference is finite")
    diff = (ref - out).abs()
    max_abs = diff.max().item() if diff.numel() else 0.0
    if max_abs <= atol:
        return
    rel = (diff.norm() / ref.norm().clamp_min(1e-30)).item()
    if rel >= ratio:
        raise AssertionError(f"{name}: max abs diff {max_abs:.3e}, relative RMS error {rel:.3e} >= {ratio:.1e}")


def outputs_and_grads(
    fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]],
    inputs: dict[str, torch.Tensor | None],
    *,
    seed: int = 0,
    **options,
) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    """Call ``fn(**inputs, **options)`` on fresh leaf copies of the floating inputs and backpropagate a fixed
    random weighting of every output (so final states get a gradient too).

    Returns:
        the outputs (detached) and the gradient of each floating input by name.
    """
    leaves = {
        k: (v.detach().clone().requires_grad_(True) if v is not None and v.is_floating_point() else v)
        for k, v in inputs.items()
    }
    outs = fn(**leaves, **options)
    outs = outs if isinstance(outs, tuple) else (outs,)
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o.double() * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.device)).sum() for o in outs)
    wanted = [v for v in leaves.values() if v is not None and v.requires_grad]
    grads = torch.autograd.grad(loss, wanted, allow_unused=True)
    names = [k for k, v in leaves.items() if v is not None and v.requires_grad]
    zero = {k: torch.zeros_like(leaves[k]) for k in names}
    return tuple(o.detach() for o in outs), {k: zero[k] if g is None else g for k, g in zip(names, grads)}


def assert_same_function(
    name: str,
    ref: tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]],
    out: tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]],
    *,
    ratio: float,
    atol: float = 0.0,
    skip: Sequence[str] = (),
) -> None:
    """Compare two `outputs_and_grads` results: every output and every gradient (except those in ``skip``)."""
    (ref_outs, ref_grads), (outs, grads) = ref, out
    if len(ref_outs) != len(outs):
        raise AssertionError(f"{name}: {len(outs)} outputs, reference has {len(ref_outs)}")
    for i, (r, o) in enumerate(zip(ref_outs, outs)):
        assert_close(f"{name} output {i}", r, o, ratio=ratio, atol=atol)
    for k, r in ref_grads.items():
        if k not in skip:
            assert_close(f"{name} d{k}", r, grads[k], ratio=ratio, atol=atol)


def _normal(*shape, dtype, device, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, device=device) * scale).to(dtype)


def selective_scan_inputs(
    b: int,
    d: int,
    l: int,
    n: int,
    *,
    groups: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    z: bool = True,
    D: bool = True,
    delta_bias: bool = True,
    initial_state: bool = False,
) -> dict[str, torch.Tensor | None]:
    """Mamba-like inputs: A = -(1..n) (S4D-real, jittered), delta around softplus(dt_bias) with dt in [1e-3, 0.1].

    ``groups`` None gives B, C of shape (b, n, l); an int gives (b, g, n, l). Parameters (A, D, delta_bias) are
    float32 as in mamba_ssm (float64 when ``dtype`` is float64).
    """
    pdtype = torch.float64 if dtype == torch.float64 else torch.float32
    bc = (b, n, l) if groups is None else (b, groups, n, l)
    dt = torch.exp(torch.rand(d, device=device) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return {
        "u": _normal(b, d, l, dtype=dtype, device=device),
        "delta": _normal(b, d, l, dtype=dtype, device=device, scale=0.5),
        "A": (-torch.arange(1, n + 1, device=device).expand(d, n) * (1 + 0.2 * torch.rand(d, n, device=device))).to(
            pdtype
        ),
        "B": _normal(*bc, dtype=dtype, device=device),
        "C": _normal(*bc, dtype=dtype, device=device),
        "D": _normal(d, dtype=pdtype, device=device) if D else None,
        "z": _normal(b, d, l, dtype=dtype, device=device) if z else None,
        "delta_bias": (dt + torch.log(-torch.expm1(-dt))).to(pdtype) if delta_bias else None,
        "initial_state": _normal(b, d, n, dtype=pdtype, device=device) if initial_state else None,
    }


def ssd_inputs(
    b: int,
    l: int,
    h: int,
    p: int,
    n: int,
    *,
    groups: int = 1,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    D: bool = True,
    D_per_channel: bool = False,
    z: bool = True,
    dt_bias: bool = True,
    initial_states: bool = False,
) -> dict[str, torch.Tensor | None]:
    """Mamba-2-like inputs: A = -U(1, 16) per head, dt around softplus(dt_bias) with dt in [1e-3, 0.1]."""
    pdtype = torch.float64 if dtype == torch.float64 else torch.float32
    dt0 = torch.exp(torch.rand(h, device=device) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return {
        "x": _normal(b, l, h, p, dtype=dtype, device=device),
        "dt": _normal(b, l, h, dtype=dtype, device=device, scale=0.5),
        "A": (-(1 + 15 * torch.rand(h, device=device))).to(pdtype),
        "B": _normal(b, l, groups, n, dtype=dtype, device=device),
        "C": _normal(b, l, groups, n, dtype=dtype, device=device),
        "D": (_normal(h, p, dtype=pdtype, device=device) if D_per_channel else _normal(h, dtype=pdtype, device=device))
        if D
        else None,
        "z": _normal(b, l, h, p, dtype=dtype, device=device) if z else None,
        "dt_bias": (dt0 + torch.log(-torch.expm1(-dt0))).to(pdtype) if dt_bias else None,
        "initial_states": _normal(b, h, p, n, dtype=pdtype, device=device) if initial_states else None,
    }
