"""Fused add + norm: the reference against explicit formulas in float64, the Triton kernels against the
reference (interpreter on the CPU, real sizes on a GPU), and bad inputs."""

from __future__ import annotations

import pytest
import torch

from longseq.kernels import add_norm
from longseq.kernels._testing import RATIO, assert_same_function, has_triton, outputs_and_grads
from longseq.kernels.norm import add_norm_ref

F64 = torch.float64
needs_triton = pytest.mark.skipif(not has_triton(), reason="triton is not installed")


def explicit_add_norm(x, residual, weight, bias=None, eps=1e-5, is_rms_norm=True, residual_in_fp32=False):
    r = x if residual is None else x + residual
    if is_rms_norm:
        y = r / torch.sqrt((r * r).sum(-1, keepdim=True) / r.shape[-1] + eps) * weight
    else:
        centred = r - r.mean(-1, keepdim=True)
        y = centred / torch.sqrt((centred * centred).mean(-1, keepdim=True) + eps) * weight
    return (y if bias is None else y + bias), r


def norm_inputs(shape, *, residual=True, bias=True, dtype=torch.float32, device="cpu"):
    d = shape[-1]
    return {
        "x": torch.randn(*shape, dtype=dtype, device=device),
        "residual": torch.randn(*shape, dtype=dtype, device=device) if residual else None,
        "weight": 1 + 0.1 * torch.randn(d, dtype=dtype, device=device),
        "bias": 0.1 * torch.randn(d, dtype=dtype, device=device) if bias else None,
    }


@pytest.mark.parametrize("is_rms_norm", [True, False])
@pytest.mark.parametrize(("residual", "bias"), [(True, True), (False, False)])
def test_reference_matches_explicit_formula_float64(is_rms_norm, residual, bias):
    inputs = norm_inputs((2, 5, 33), residual=residual, bias=bias, dtype=F64)
    ref = outputs_and_grads(add_norm_ref, inputs, is_rms_norm=is_rms_norm)
    oracle = outputs_and_grads(explicit_add_norm, inputs, is_rms_norm=is_rms_norm)
    assert_same_function("add_norm_ref", oracle, ref, ratio=1e-12)


def test_dtypes_of_the_outputs():
    inputs = norm_inputs((3, 8), dtype=torch.bfloat16)
    y, r = add_norm(**inputs, residual_in_fp32=True)
    assert y.dtype == torch.bfloat16 and r.dtype == torch.float32
    y, r = add_norm(**{**inputs, "residual": inputs["residual"].float()})
    assert y.dtype == torch.bfloat16 and r.dtype == torch.float32
    assert add_norm(**{**inputs, "residual": None})[1].dtype == torch.bfloat16


@needs_triton
@pytest.mark.parametrize("is_rms_norm", [True, False])
@pytest.mark.parametrize(("residual", "residual_in_fp32"), [(True, True), (True, False), (False, False)])
def test_triton_matches_reference(is_rms_norm, residual, residual_in_fp32, nan_poison):
    """Under TRITON_INTERPRET=1 on the CPU; 40 rows cross the kernel's 16-row programs, 50 features its block."""
    inputs = norm_inputs((2, 20, 50), residual=residual, bias=not is_rms_norm)
    opts = {"is_rms_norm": is_rms_norm, "residual_in_fp32": residual_in_fp32}
    ref = outputs_and_grads(add_norm_ref, inputs, **opts)
    out = outputs_and_grads(add_norm, inputs, **opts, backend="triton")
    assert_same_function("triton add_norm", ref, out, ratio=RATIO[torch.float32])


@needs_triton
@pytest.mark.parametrize("per", [4, 16])
def test_triton_with_several_rows_per_program(per, monkeypatch, nan_poison):
    """Long inputs give each program several rows (the last program a partial set)."""
    from longseq.kernels.norm import triton_kernels as tk

    monkeypatch.setattr(tk, "rows_per_program", lambda rows: per)
    inputs = norm_inputs((3, 13, 24), bias=True)
    ref = outputs_and_grads(add_norm_ref, inputs, is_rms_norm=False)
    out = outputs_and_grads(add_norm, inputs, is_rms_norm=False, backend="triton")
    assert_same_function(f"triton add_norm {per} rows per program", ref, out, ratio=RATIO[torch.float32])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("is_rms_norm", [True, False])
def test_triton_matches_reference_on_gpu(dtype, is_rms_norm):
    inputs = norm_inputs((4, 2048, 2560), dtype=dtype, device="cuda")
    opts = {"is_rms_norm": is_rms_norm, "residual_in_fp32": True}
    ref = outputs_and_grads(add_norm_ref, inputs, **opts)
    out = outputs_and_grads(add_norm, inputs, **opts, backend="triton")
    assert_same_function(f"gpu add_norm {dtype}", ref, out, ratio=RATIO[dtype])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weight": torch.ones(7)}, "expected x"),
        ({"bias": torch.ones(7)}, "bias must be"),
        ({"residual": torch.ones(3, 7)}, "residual must"),
    ],
)
def test_rejects_bad_inputs(change, message):
    with pytest.raises(ValueError, match=message):
        add_norm(**{**norm_inputs((3, 8)), **change})


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_core_add_norm_uses_the_fused_op_on_gpu(kind):
    """core.norm.add_norm on CUDA (fused) equals its CPU formulation in float32."""
    from longseq.core.norm import add_norm as core_add_norm
    from longseq.core.norm import make_norm

    norm = make_norm(kind, 256)
    x, residual = torch.randn(4, 64, 256), torch.randn(4, 64, 256)
    y_cpu, r_cpu = core_add_norm(x, residual, norm, residual_in_fp32=True)
    y_gpu, r_gpu = core_add_norm(x.cuda(), residual.cuda(), norm.cuda(), residual_in_fp32=True)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r_gpu.cpu(), r_cpu)
