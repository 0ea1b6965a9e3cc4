"""What only a GPU would show, checked on the CPU: the backend choice for float64, 64-bit offsets in Hyena's
backward past 2^31 elements, and launch grids that stay within CUDA's grid limits at any length."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from longseq.kernels import _backend
from longseq.kernels._testing import has_triton

needs_triton = pytest.mark.skipif(not has_triton(), reason="triton is not installed")
GRID_YZ_LIMIT = 65535  # CUDA's limit on grid y and z; x allows 2^31 - 1


def fake_cuda(dtype: torch.dtype):
    """What `choose` reads of a CUDA tensor, without one."""
    return types.SimpleNamespace(is_cuda=True, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_automatic_backend_is_triton_for_cuda_tensors(dtype, monkeypatch):
    monkeypatch.delenv("LONGSEQ_BACKEND", raising=False)
    monkeypatch.setattr(_backend, "triton_available", lambda: True)
    assert _backend.choose(fake_cuda(dtype), None) == "triton"


def test_float64_cuda_inputs_go_to_the_torch_backend(monkeypatch):
    """The kernels compute in float32, and SSD's tl.dot does not compile with float64 operands."""
    monkeypatch.delenv("LONGSEQ_BACKEND", raising=False)
    monkeypatch.setattr(_backend, "triton_available", lambda: True)
    assert _backend.choose(fake_cuda(torch.float64), None) == "torch"
    with pytest.raises(ValueError, match="float64"):
        _backend.choose(fake_cuda(torch.float64), "triton")


@needs_triton
def test_float64_cpu_call_with_triton_refused_in_one_line():
    from longseq.kernels import ssd_scan
    from longseq.kernels._testing import ssd_inputs

    if not _backend.interpreting():
        pytest.skip("the CPU path of the triton backend is the interpreter")
    with pytest.raises(ValueError, match="float64"):
        ssd_scan(**ssd_inputs(1, 8, 2, 4, 4, dtype=torch.float64), chunk_size=16, backend="triton")


@needs_triton
def test_hyena_backward_offsets_are_64_bit(monkeypatch):
    """2 d l >= 2^31 (d = 1024, l = 2^21): the three streams of the gradient land d l and 2 d l elements after
    the first, exactly. The interpreter computes in the kernel's own integer widths (an i32 product wraps as it
    would on the GPU), so one program runs with its loads and stores intercepted: no memory of that size."""
    if not _backend.interpreting():
        pytest.skip("runs one program through the interpreter")
    from triton.runtime import interpreter

    from longseq.kernels.hyena import triton_kernels as hk

    builder = interpreter.interpreter_builder
    real_load = type(builder).create_masked_load
    stored: list[np.ndarray] = []

    def load_nothing(self, ptrs, mask, other, *args):
        nothing = interpreter.TensorHandle(np.zeros_like(mask.data), mask.dtype.scalar)
        return real_load(self, ptrs, nothing, other, *args)

    def record_store(self, ptrs, value, mask, *args):
        stored.append(ptrs.data[mask.data].astype(np.int64))

    monkeypatch.setattr(type(builder), "create_masked_load", load_nothing)
    monkeypatch.setattr(type(builder), "create_masked_store", record_store)
    d, l, w = 1024, 2**21, 3
    small = torch.zeros(4)
    hk._pre_kernel[(1, 1)](
        small, small, None, small, small, None, None, small,
        l, d, l // hk.BLOCK_L, 3 * d * l, l, 1,
        W=w, HAS_BIAS=False, GRAD=True, BLOCK_D=hk.BLOCK_D, BLOCK_L=hk.BLOCK_L,
    )  # fmt: skip
    assert len(stored) == 3
    base = stored[0].min()  # channel 0, position 0 of the first stream
    dd, t = np.meshgrid(np.arange(hk.BLOCK_D), np.arange(hk.BLOCK_L), indexing="ij")
    for stream, addresses in enumerate(stored):
        expected = (stream * d + dd) * l + t
        np.testing.assert_array_equal(np.sort((addresses - base) // 4), np.sort(expected.ravel()))


@needs_triton
@pytest.mark.parametrize("l", [1, 4_194_304 + 64, 2**26])
def test_conv_and_hyena_grid_within_cuda_limits(l):
    from longseq.kernels.causal_conv1d import triton_kernels as ck

    x, y = ck.grid(3, 1536, l)
    assert y <= GRID_YZ_LIMIT and x < 2**31
    assert x == 3 * -(-l // ck.BLOCK_L)  # every (batch row, block of positions) has its program


@needs_triton
@pytest.mark.parametrize(("l", "T"), [(100, 16), (65536 * 16 + 16, 16), (2**26, 256)])
def test_ssd_grid_within_cuda_limits(l, T):
    from longseq.kernels.ssd import triton_kernels as dk

    n_chunks = -(-l // T)
    x, y = dk.chunk_grid(2, 24, n_chunks, 4)
    assert y <= GRID_YZ_LIMIT and x < 2**31
    assert (x, y) == (2 * 24 * n_chunks, 4)


@pytest.fixture
def tf32_dots():
    """tl.dot as an H100 runs it on float32 operands by default (TF32: 10 mantissa bits, truncated)."""
    if not _backend.interpreting():
        pytest.skip("emulates the GPU's tl.dot in the interpreter")
    from longseq.kernels._testing import tf32_dots as emulate

    with emulate():
        yield


def check_ssd_under_tf32(shape, chunk_size):
    """The Triton SSD with TF32 dots against the exact float32 torch backend, within the GPU test's bound (5e-3
    for float32). The gradient of dt_bias and A sums d(dt A) over every step; computed as a difference of
    nearly equal terms it came out at 4e-3 to 1.2e-1 here (about 1e-2 at the GPU test's shape)."""
    from longseq.kernels import ssd_scan
    from longseq.kernels._testing import assert_same_function, outputs_and_grads, ssd_inputs

    inputs = ssd_inputs(*shape, initial_states=True)
    opts = {"chunk_size": chunk_size, "dt_softplus": True, "return_final_states": True}
    ref = outputs_and_grads(ssd_scan, inputs, **opts, backend="torch")
    out = outputs_and_grads(ssd_scan, inputs, **opts, backend="triton")
    assert_same_function(f"ssd tf32 {shape} T={chunk_size}", ref, out, ratio=5e-3)


@needs_triton
def test_ssd_gradients_hold_the_gpu_bound_with_tf32_dots(tf32_dots):
    check_ssd_under_tf32((1, 192, 2, 16, 32), 128)


@needs_triton
@pytest.mark.slow
def test_ssd_gradients_hold_the_gpu_bound_with_tf32_dots_at_mamba2_sizes(tf32_dots):
    """p = 64, n = 128, chunk 256 as in the GPU test (and Mamba-2), two chunks."""
    check_ssd_under_tf32((1, 300, 2, 64, 128), 256)


def _forced(kernel, config, monkeypatch):
    """Run the autotuned ``kernel`` in this one config (the interpreter otherwise runs only the first)."""
    monkeypatch.setattr(kernel, "configs", [config])


SCAN_CONFIGS = ("FWD_CONFIGS", "BWD_CONFIGS")


@needs_triton
@pytest.mark.slow
@pytest.mark.parametrize("which", [f"{name}:{i}" for name in SCAN_CONFIGS for i in range(5)])
def test_every_selective_scan_config_matches_the_reference(which, monkeypatch, nan_poison):
    """Each autotune config a GPU may pick, at ragged sizes (channels and states not multiples of the block)."""
    if not _backend.interpreting():
        pytest.skip("forces configs in the interpreter")
    from longseq.kernels import selective_scan
    from longseq.kernels._testing import RATIO, assert_same_function, outputs_and_grads, selective_scan_inputs
    from longseq.kernels.selective_scan import selective_scan_ref
    from longseq.kernels.selective_scan import triton_kernels as tk

    name, index = which.split(":")
    configs = getattr(tk, name)
    if int(index) >= len(configs):
        pytest.skip("no such config")
    kernel = tk._scan_fwd_kernel if name == "FWD_CONFIGS" else tk._scan_bwd_kernel
    _forced(kernel, configs[int(index)], monkeypatch)
    inputs = selective_scan_inputs(2, 20, 70, 5, groups=2, initial_state=True)
    opts = {"delta_softplus": True, "return_last_state": True}
    ref = outputs_and_grads(selective_scan_ref, inputs, **opts)
    out = outputs_and_grads(selective_scan, inputs, **opts, backend="triton")
    assert_same_function(f"scan {which}", ref, out, ratio=RATIO[torch.float32])


@needs_triton
@pytest.mark.slow
@pytest.mark.parametrize("which", [f"STATE_CONFIGS:{i}" for i in range(4)] + ["SCAN_CONFIGS:0"])
def test_every_ssd_config_matches_the_reference(which, monkeypatch, nan_poison):
    if not _backend.interpreting():
        pytest.skip("forces configs in the interpreter")
    from longseq.kernels import ssd_scan
    from longseq.kernels._testing import RATIO, assert_same_function, outputs_and_grads, ssd_inputs
    from longseq.kernels.ssd import ssd_scan_ref
    from longseq.kernels.ssd import triton_kernels as tk

    name, index = which.split(":")
    kernel = tk._chunk_state_kernel if name == "STATE_CONFIGS" else tk._chunk_scan_kernel
    _forced(kernel, getattr(tk, name)[int(index)], monkeypatch)
    inputs = ssd_inputs(1, 150, 2, 40, 20, groups=2, initial_states=True)
    opts = {"chunk_size": 64, "dt_softplus": True, "return_final_states": True}
    ref = outputs_and_grads(ssd_scan_ref, inputs, **opts)
    out = outputs_and_grads(ssd_scan, inputs, **opts, backend="triton")
    assert_same_function(f"ssd {which}", ref, out, ratio=RATIO[torch.float32])
