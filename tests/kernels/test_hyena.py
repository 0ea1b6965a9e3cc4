"""Hyena's convolution core: the reference against a direct-sum formulation in float64, the torch and Triton
paths against the reference, and bad inputs."""

from __future__ import annotations

import pytest
import torch

from longseq.kernels import hyena_conv
from longseq.kernels._testing import RATIO, assert_same_function, has_triton, outputs_and_grads
from longseq.kernels.fftconv import direct_conv_ref
from longseq.kernels.hyena import hyena_conv_ref

F64 = torch.float64
needs_triton = pytest.mark.skipif(not has_triton(), reason="triton is not installed")


def direct_hyena(u, weight, bias, k, D):
    """Short conv by shifted sums, long conv by direct summation: no FFT, no conv routine."""
    l, w, d = u.shape[-1], weight.shape[1], k.shape[0]
    padded = torch.nn.functional.pad(u, (w - 1, 0))
    uc = sum(weight[:, j, None] * padded[..., j : j + l] for j in range(w))
    if bias is not None:
        uc = uc + bias[:, None]
    x0, x1, v = uc.split(d, dim=1)
    return direct_conv_ref(v * x1, k, D) * x0


def hyena_inputs(b, d, l, lk, *, w=3, bias=True, dtype=torch.float32, device="cpu"):
    return {
        "u": torch.randn(b, 3 * d, l, dtype=dtype, device=device),
        "weight": torch.randn(3 * d, w, dtype=dtype, device=device) / w**0.5,
        "bias": torch.randn(3 * d, dtype=dtype, device=device) if bias else None,
        "k": torch.randn(d, lk, dtype=dtype, device=device) / lk**0.5,
        "D": torch.randn(d, dtype=dtype, device=device),
    }


@pytest.mark.parametrize(("l", "lk", "bias"), [(1, 1, True), (63, 63, True), (100, 30, False)])
def test_reference_matches_direct_sums_float64(l, lk, bias):
    inputs = hyena_inputs(2, 3, l, lk, bias=bias, dtype=F64)
    assert_same_function(
        "hyena_conv_ref",
        outputs_and_grads(direct_hyena, inputs),
        outputs_and_grads(hyena_conv_ref, inputs),
        ratio=1e-12,
    )


@pytest.mark.parametrize(("l", "lk"), [(1, 1), (63, 63), (100, 12)])
def test_torch_backend_matches_reference(l, lk, nan_poison):
    inputs = hyena_inputs(2, 4, l, lk)
    ref = outputs_and_grads(hyena_conv_ref, inputs)
    out = outputs_and_grads(hyena_conv, inputs, backend="torch")
    assert_same_function("torch hyena", ref, out, ratio=RATIO[torch.float32])


@needs_triton
@pytest.mark.parametrize(("l", "lk", "bias"), [(1, 1, True), (70, 70, True), (67, 20, False)])
def test_triton_matches_reference(l, lk, bias, nan_poison):
    """Under TRITON_INTERPRET=1 on the CPU: output and every input gradient."""
    inputs = hyena_inputs(2, 20, l, lk, bias=bias)
    ref = outputs_and_grads(hyena_conv_ref, inputs)
    out = outputs_and_grads(hyena_conv, inputs, backend="triton")
    assert_same_function(f"triton hyena l={l}", ref, out, ratio=RATIO[torch.float32])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_reference_on_gpu(dtype):
    inputs = hyena_inputs(4, 256, 8192, 8192, dtype=dtype, device="cuda")
    ref = outputs_and_grads(hyena_conv_ref, inputs)
    out = outputs_and_grads(hyena_conv, inputs, backend="triton")
    assert_same_function(f"gpu hyena {dtype}", ref, out, ratio=RATIO[dtype])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"u": torch.zeros(1, 8, 10)}, "expected u"),
        ({"k": torch.zeros(3, 11)}, "expected u"),
        ({"weight": torch.zeros(8, 3)}, "weight must be"),
        ({"bias": torch.zeros(3)}, "bias must be"),
        ({"D": torch.zeros(2)}, "D must be"),
    ],
)
def test_rejects_bad_inputs(change, message):
    with pytest.raises(ValueError, match=message):
        hyena_conv(**{**hyena_inputs(1, 3, 10, 10), **change})
