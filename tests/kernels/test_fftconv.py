"""Hyena long conv: the FFT reference against direct summation in float64 (odd lengths, shorter filters),
every backend against the reference, and bad inputs."""

from __future__ import annotations

import pytest
import torch

from longseq.kernels import fftconv
from longseq.kernels._testing import RATIO, assert_same_function, outputs_and_grads
from longseq.kernels.fftconv import direct_conv_ref, fftconv_ref
from longseq.kernels.fftconv.torch_fftconv import fast_fft_size

F64 = torch.float64


def fft_inputs(b, h, l, lk, *, dtype=torch.float32):
    return {"u": torch.randn(b, h, l, dtype=dtype), "k": torch.randn(h, lk, dtype=dtype) / lk**0.5, "D": torch.randn(h)}


@pytest.mark.parametrize(("l", "lk"), [(1, 1), (2, 1), (63, 63), (63, 5), (257, 257), (300, 40)])
def test_fft_reference_matches_direct_sum_float64(l, lk):
    inputs = fft_inputs(2, 3, l, lk, dtype=F64)
    inputs["D"] = inputs["D"].double()
    ref = outputs_and_grads(fftconv_ref, inputs)
    oracle = outputs_and_grads(direct_conv_ref, inputs)
    assert_same_function(f"fftconv_ref l={l} lk={lk}", oracle, ref, ratio=1e-12)


def test_output_is_causal():
    """Changing u after position t leaves outputs up to t unchanged (a circular conv would leak)."""
    inputs = fft_inputs(1, 2, 64, 64, dtype=F64)
    y = fftconv(**inputs)
    u2 = inputs["u"].clone()
    u2[..., 40:] = torch.randn_like(u2[..., 40:])
    y2 = fftconv(**{**inputs, "u": u2})
    torch.testing.assert_close(y[..., :40], y2[..., :40], rtol=0, atol=1e-12)
    assert not torch.allclose(y[..., 40:], y2[..., 40:])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"u": torch.zeros(3, 8)}, "expected u"),
        ({"k": torch.zeros(2, 8)}, "expected u"),
        ({"k": torch.zeros(3, 9)}, "expected u"),
        ({"D": torch.zeros(2)}, "D must be"),
    ],
)
def test_rejects_bad_inputs(change, message):
    with pytest.raises(ValueError, match=message):
        fftconv(**{**fft_inputs(1, 3, 8, 8), **change})


@pytest.mark.parametrize(("l", "lk"), [(1, 1), (63, 5), (63, 16), (63, 17), (257, 257), (300, 40)])
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_torch_backend_matches_reference(l, lk, dtype, nan_poison):
    """The torch path (real FFTs at a 5-smooth size) at short and long filters and odd lengths."""
    inputs = fft_inputs(2, 3, l, lk, dtype=dtype)
    inputs["D"] = inputs["D"].to(dtype)
    ref = outputs_and_grads(fftconv_ref, inputs)
    out = outputs_and_grads(fftconv, inputs, backend="torch")
    assert_same_function(f"fftconv torch l={l} lk={lk}", ref, out, ratio=RATIO[dtype])


def test_fast_fft_size_is_the_smallest_5_smooth_size():
    def smooth(v):
        for f in (2, 3, 5):
            while v % f == 0:
                v //= f
        return v == 1

    for m in range(1, 400):
        assert fast_fft_size(m) == next(v for v in range(m, 2 * m + 1) if smooth(v))
