"""SSD (Mamba-2) scan: the sequential reference against the chunked algorithm in float64 at several chunk sizes
(l not a multiple of the chunk included), every backend against the reference, and bad inputs."""

from __future__ import annotations

import pytest
import torch

from longseq.kernels import ssd_scan
from longseq.kernels._testing import RATIO, assert_same_function, has_triton, outputs_and_grads, ssd_inputs
from longseq.kernels.ssd import ssd_scan_chunked, ssd_scan_ref

F64 = torch.float64


@pytest.mark.parametrize(("l", "chunk_size"), [(1, 4), (16, 16), (63, 16), (100, 32), (130, 64), (40, 128)])
@pytest.mark.parametrize("groups", [1, 2])
def test_chunked_matches_sequential_float64(l, chunk_size, groups):
    inputs = ssd_inputs(2, l, 4, 3, 5, groups=groups, dtype=F64, initial_states=True, D_per_channel=groups == 2)
    opts = {"chunk_size": chunk_size, "dt_softplus": True, "return_final_states": True}
    ref = outputs_and_grads(ssd_scan_ref, inputs, **opts)
    chunked = outputs_and_grads(ssd_scan_chunked, inputs, **opts)
    assert_same_function(f"ssd chunked l={l} T={chunk_size}", ref, chunked, ratio=1e-10)


@pytest.mark.parametrize("opts", [{}, {"dt_softplus": True}])
def test_chunked_matches_sequential_without_options(opts):
    inputs = ssd_inputs(1, 37, 2, 4, 3, dtype=F64, D=False, z=False, dt_bias=False)
    inputs["dt"] = inputs["dt"].abs()  # without softplus dt must be a positive step size
    ref = outputs_and_grads(ssd_scan_ref, inputs, chunk_size=8, **opts)
    chunked = outputs_and_grads(ssd_scan_chunked, inputs, chunk_size=8, **opts)
    assert_same_function("ssd chunked plain", ref, chunked, ratio=1e-10)


def test_final_state_continues_the_scan():
    """Scanning [0, l) equals scanning [0, m) then [m, l) from the first part's final state."""
    inputs = ssd_inputs(2, 50, 4, 3, 5, groups=2, dtype=F64)
    whole, last = ssd_scan_ref(**inputs, chunk_size=16, dt_softplus=True, return_final_states=True)
    first = {k: (v[:, :20] if k in ("x", "dt", "B", "C", "z") else v) for k, v in inputs.items()}
    second = {k: (v[:, 20:] if k in ("x", "dt", "B", "C", "z") else v) for k, v in inputs.items()}
    y1, s1 = ssd_scan_chunked(**first, chunk_size=16, dt_softplus=True, return_final_states=True)
    y2, s2 = ssd_scan_chunked(
        **{**second, "initial_states": s1}, chunk_size=16, dt_softplus=True, return_final_states=True
    )
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), whole, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s2, last, rtol=1e-10, atol=1e-10)


BAD = {
    "x 3-d": ({"x": torch.zeros(1, 8, 4)}, "expected x"),
    "dt shape": ({"dt": torch.zeros(1, 8, 3)}, "expected x"),
    "A shape": ({"A": torch.zeros(4, 1)}, "expected x"),
    "B groups": ({"B": torch.zeros(1, 8, 3, 5)}, "B must be"),
    "C length": ({"C": torch.zeros(1, 7, 1, 5)}, "C must be"),
    "initial_states": ({"initial_states": torch.zeros(1, 4, 3, 4)}, "initial_states must be"),
    "D shape": ({"D": torch.zeros(3)}, "D must be"),
    "z shape": ({"z": torch.zeros(1, 8, 4, 2)}, "z must be"),
    "dt_bias shape": ({"dt_bias": torch.zeros(2)}, "dt_bias must be"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_rejects_bad_shapes(case):
    inputs = ssd_inputs(1, 8, 4, 3, 5)
    change, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        ssd_scan(**{**inputs, **change}, chunk_size=4)


def test_rejects_bad_chunk_size():
    with pytest.raises(ValueError, match="chunk_size"):
        ssd_scan(**ssd_inputs(1, 8, 4, 3, 5), chunk_size=0)


@pytest.mark.parametrize(("l", "chunk_size"), [(1, 256), (77, 256), (100, 16)])
def test_torch_backend_matches_reference_float32(l, chunk_size, nan_poison):
    inputs = ssd_inputs(2, l, 4, 8, 6, groups=2, initial_states=True)
    opts = {"chunk_size": chunk_size, "dt_softplus": True, "return_final_states": True}
    ref = outputs_and_grads(ssd_scan_ref, inputs, **opts)
    out = outputs_and_grads(ssd_scan, inputs, **opts, backend="torch")
    assert_same_function(f"ssd torch l={l}", ref, out, ratio=RATIO[torch.float32])


needs_triton = pytest.mark.skipif(not has_triton(), reason="triton is not installed")


@needs_triton
@pytest.mark.parametrize(
    ("l", "chunk_size", "groups", "init"), [(1, 16, 1, True), (37, 16, 2, True), (40, 24, 1, False)]
)
def test_triton_matches_reference(l, chunk_size, groups, init, nan_poison):
    """Under TRITON_INTERPRET=1 on the CPU: outputs, final states, every input gradient (chunk 24 runs as 32)."""
    inputs = ssd_inputs(1, l, 4, 8, 6, groups=groups, initial_states=init, D_per_channel=groups == 2)
    opts = {"chunk_size": chunk_size, "dt_softplus": True, "return_final_states": True}
    ref = outputs_and_grads(ssd_scan_ref, inputs, **opts)
    out = outputs_and_grads(ssd_scan, inputs, **opts, backend="triton")
    assert_same_function(f"triton ssd l={l}", ref, out, ratio=RATIO[torch.float32])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_torch_backend_on_gpu(dtype):
    """Real sizes on CUDA (tl.dot rounds float32 to tf32, hence the looser bound), against the chunked path."""
    inputs = ssd_inputs(2, 4097, 24, 64, 128, dtype=dtype, device="cuda", initial_states=True)
    opts = {"chunk_size": 256, "dt_softplus": True, "return_final_states": True}
    ref = outputs_and_grads(ssd_scan, inputs, **opts, backend="torch")
    out = outputs_and_grads(ssd_scan, inputs, **opts, backend="triton")
    assert_same_function(f"gpu ssd {dtype}", ref, out, ratio=5e-3 if dtype == torch.float32 else RATIO[dtype])
