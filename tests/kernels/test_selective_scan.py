"""Selective scan: the reference against a materialised closed form in float64, the decode step against the
scan, every backend against the reference (outputs, final states, every input gradient), and bad inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from longseq.kernels import selective_scan, selective_state_update
from longseq.kernels._testing import (
    RATIO,
    assert_close,
    assert_same_function,
    has_triton,
    outputs_and_grads,
    selective_scan_inputs,
)
from longseq.kernels.selective_scan import selective_scan_ref, selective_state_update_ref
from longseq.kernels.selective_scan.torch_scan import selective_scan_torch

F64 = torch.float64


def closed_form_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, **state_options):
    """h_t = sum_{s <= t} exp((S_t - S_s)) delta_s B_s u_s + exp(S_t) h_0 with S_t = sum_{r <= t} delta_r A,
    materialised as a (b, d, n, l, l) tensor: no recurrence at all."""
    b, d, l = u.shape
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    channel_group = torch.arange(d) // (d // (1 if B.dim() == 3 else B.shape[1]))
    Bd = B.unsqueeze(1).expand(b, d, *B.shape[1:]) if B.dim() == 3 else B[:, channel_group]  # (b, d, n, l)
    Cd = C.unsqueeze(1).expand(b, d, *C.shape[1:]) if C.dim() == 3 else C[:, channel_group]
    S = torch.cumsum(delta[:, :, None, :] * A[None, :, :, None], dim=-1)  # (b, d, n, l)
    causal = torch.ones(l, l, dtype=torch.bool).tril()
    decay = torch.exp((S[..., :, None] - S[..., None, :]).masked_fill(~causal, float("-inf")))  # (b, d, n, t, s)
    h = (decay * ((delta * u)[:, :, None, :] * Bd)[..., None, :]).sum(-1)  # (b, d, n, l)
    if state_options.get("initial_state") is not None:
        h = h + torch.exp(S) * state_options["initial_state"][..., None]
    y = (h * Cd).sum(2)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return (y, h[..., -1]) if state_options.get("return_last_state") else y


OPTIONS = {
    "plain": {},
    "softplus-bias": {"delta_softplus": True},
    "all": {"delta_softplus": True, "return_last_state": True},
}


@pytest.mark.parametrize("l", [1, 63, 130])
@pytest.mark.parametrize("groups", [None, 1, 2])
@pytest.mark.parametrize("opts", list(OPTIONS))
def test_reference_matches_closed_form_float64(l, groups, opts):
    full = opts == "all"
    inputs = selective_scan_inputs(
        2, 4, l, 3, groups=groups, dtype=F64, z=full, D=full, delta_bias=opts != "plain", initial_state=full
    )
    ref = outputs_and_grads(selective_scan_ref, inputs, **OPTIONS[opts])
    oracle = outputs_and_grads(closed_form_scan, inputs, **OPTIONS[opts])
    assert_same_function(f"selective_scan_ref l={l}", oracle, ref, ratio=1e-10)


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("groups", [None, 2])
def test_state_update_loop_matches_scan(groups, backend):
    b, d, l, n = 2, 4, 9, 3
    inp = selective_scan_inputs(b, d, l, n, groups=groups, dtype=F64, initial_state=True)
    y_scan, last = selective_scan_ref(**inp, delta_softplus=True, return_last_state=True)
    state = inp["initial_state"].clone()
    for t in range(l):
        y_t = selective_state_update(
            state,
            inp["u"][..., t],
            inp["delta"][..., t],
            inp["A"],
            inp["B"][..., t],
            inp["C"][..., t],
            D=inp["D"],
            z=inp["z"][..., t],
            dt_bias=inp["delta_bias"],
            dt_softplus=True,
            backend=backend,
        )
        assert_close(f"step {t}", y_scan[..., t], y_t, ratio=1e-12)
    assert_close("final state", last, state, ratio=1e-12)


def test_empty_sequence_returns_initial_state():
    inp = selective_scan_inputs(1, 4, 0, 3, initial_state=True)
    out, last = selective_scan(**inp, return_last_state=True, backend="reference")
    assert out.shape == (1, 4, 0)
    assert torch.equal(last, inp["initial_state"])


def test_public_op_returns_input_dtype():
    inp = selective_scan_inputs(1, 4, 5, 3, dtype=torch.bfloat16)
    out, last = selective_scan(**inp, return_last_state=True, backend="reference")
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32


@pytest.mark.parametrize("state_dtype", [torch.float32, torch.bfloat16])
def test_state_update_in_place_matches_reference(state_dtype, nan_poison):
    inp = selective_scan_inputs(2, 4, 1, 3, groups=2, initial_state=True, dtype=torch.bfloat16)
    args = [inp[k][..., 0] for k in ("u", "delta")] + [inp["A"], inp["B"][..., 0], inp["C"][..., 0]]
    opts = {"D": inp["D"], "z": inp["z"][..., 0], "dt_bias": inp["delta_bias"], "dt_softplus": True}
    start = inp["initial_state"].to(state_dtype)
    state_ref, state = start.clone(), start.clone()
    y_ref = selective_state_update_ref(state_ref, *args, **opts)
    y = selective_state_update(state, *args, **opts, backend="torch")
    assert y.dtype == torch.bfloat16 and state.dtype == state_dtype
    assert_close("y", y_ref, y, ratio=RATIO[torch.bfloat16])
    assert_close("state", state_ref, state, ratio=RATIO[state_dtype])
    assert not torch.equal(state, start)


BAD_SCAN = {
    "u 2-d": ({"u": torch.zeros(4, 5)}, "u and delta"),
    "delta shape": ({"delta": torch.zeros(1, 4, 6)}, "u and delta"),
    "A rows": ({"A": torch.zeros(5, 3)}, "A must be"),
    "B length": ({"B": torch.zeros(1, 3, 6)}, "B must be"),
    "C groups": ({"C": torch.zeros(1, 3, 3, 5)}, "C must be"),
    "D shape": ({"D": torch.zeros(3)}, "D must be"),
    "z shape": ({"z": torch.zeros(1, 4, 6)}, "z must be"),
    "delta_bias shape": ({"delta_bias": torch.zeros(4, 1)}, "delta_bias must be"),
    "initial_state": ({"initial_state": torch.zeros(1, 4, 2)}, "initial_state must be"),
}


@pytest.mark.parametrize("case", list(BAD_SCAN))
def test_scan_rejects_bad_shapes(case):
    inp = selective_scan_inputs(1, 4, 5, 3)
    change, message = BAD_SCAN[case]
    with pytest.raises(ValueError, match=message):
        selective_scan(**{**inp, **change})


def test_state_update_rejects_bad_shapes():
    state, x = torch.zeros(2, 4, 3), torch.zeros(2, 4)
    with pytest.raises(ValueError, match="expected state"):
        selective_state_update(state, x, torch.zeros(2, 5), torch.zeros(4, 3), torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="B must be"):
        selective_state_update(state, x, x, torch.zeros(4, 3), torch.zeros(2, 2), torch.zeros(2, 3))


def test_unknown_backend_and_triton_on_cpu_are_refused(monkeypatch):
    inp = selective_scan_inputs(1, 4, 5, 3)
    with pytest.raises(ValueError, match="unknown kernel backend"):
        selective_scan(**inp, backend="cuda")
    monkeypatch.setenv("LONGSEQ_BACKEND", "fast")
    with pytest.raises(ValueError, match="unknown kernel backend"):
        selective_scan(**inp)
    monkeypatch.delenv("LONGSEQ_BACKEND")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="triton"):
        selective_scan(**inp, backend="triton")


def _torch_scan(chunk_size):
    def run(u, delta, A, B, C, D=None, z=None, delta_bias=None, initial_state=None, **opts):
        return selective_scan_torch(
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            opts.get("delta_softplus", False),
            opts.get("return_last_state", False),
            initial_state,
            chunk_size=chunk_size,
        )

    return run


@pytest.mark.parametrize(("l", "chunk_size"), [(1, 8), (63, 8), (64, 16), (130, 32), (40, None)])
@pytest.mark.parametrize("groups", [None, 2])
@pytest.mark.parametrize("opts", list(OPTIONS))
def test_torch_backend_matches_reference_float64(l, chunk_size, groups, opts):
    full = opts == "all"
    inputs = selective_scan_inputs(
        2, 4, l, 3, groups=groups, dtype=F64, z=full, D=full, delta_bias=opts != "plain", initial_state=full
    )
    ref = outputs_and_grads(selective_scan_ref, inputs, **OPTIONS[opts])
    out = outputs_and_grads(_torch_scan(chunk_size), inputs, **OPTIONS[opts])
    assert_same_function(f"torch scan l={l} T={chunk_size}", ref, out, ratio=1e-10)


@pytest.mark.parametrize("l", [1, 77, 300])
@pytest.mark.parametrize("time_major", [False, True])
def test_torch_backend_matches_reference_float32(l, time_major, nan_poison):
    """The public op on float32, NaN-poisoned buffers, inputs as transposed views of (b, l, d) memory or not."""
    inputs = selective_scan_inputs(2, 8, l, 4, groups=2, initial_state=True)
    if time_major:
        for k in ("u", "delta", "z"):
            inputs[k] = inputs[k].transpose(1, 2).contiguous().transpose(1, 2)
    opts = {"delta_softplus": True, "return_last_state": True}
    ref = outputs_and_grads(selective_scan_ref, inputs, **opts)
    out = outputs_and_grads(selective_scan, inputs, **opts, backend="torch")
    assert_same_function(f"torch scan l={l}", ref, out, ratio=RATIO[torch.float32])


def _saved_elements(fn, inputs) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel()
        return t

    leaves = {k: v.requires_grad_(True) if v is not None else None for k, v in inputs.items()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(**leaves, delta_softplus=True)
    return total


def test_torch_backend_saves_no_per_step_states():
    """Autograd keeps about two copies of the inputs (no (b, d, n, l) states), the reference far more."""
    inputs = selective_scan_inputs(1, 64, 512, 16)
    input_elements = sum(t.numel() for t in inputs.values() if t is not None)
    saved = _saved_elements(lambda **kw: selective_scan(**kw, backend="torch"), inputs)
    assert saved < 2.5 * input_elements
    assert _saved_elements(selective_scan_ref, selective_scan_inputs(1, 64, 512, 16)) > 4 * input_elements


needs_triton = pytest.mark.skipif(not has_triton(), reason="triton is not installed")
TRITON_CASES = {
    "l1-all": ({"l": 1, "groups": None}, {"delta_softplus": True, "return_last_state": True}),
    "l37-groups-all": ({"l": 37, "groups": 2}, {"delta_softplus": True, "return_last_state": True}),
    "l40-plain": ({"l": 40, "groups": None, "z": False, "D": False, "delta_bias": False}, {}),
}


@needs_triton
@pytest.mark.parametrize("case", list(TRITON_CASES))
def test_triton_matches_reference(case, nan_poison):
    """Under TRITON_INTERPRET=1 on the CPU: outputs, final state, every input gradient."""
    shape, opts = TRITON_CASES[case]
    full = bool(opts)
    inputs = selective_scan_inputs(2, 6, n=3, initial_state=full, **shape)
    if not full:
        inputs["delta"] = inputs["delta"].abs()
        inputs["u"] = inputs["u"].transpose(1, 2).contiguous().transpose(1, 2)  # time-major memory
    ref = outputs_and_grads(selective_scan_ref, inputs, **opts)
    out = outputs_and_grads(selective_scan, inputs, **opts, backend="triton")
    assert_same_function(f"triton scan {case}", ref, out, ratio=RATIO[torch.float32])


@needs_triton
@pytest.mark.parametrize("groups", [None, 2])
def test_triton_state_update_matches_reference(groups, nan_poison):
    inp = selective_scan_inputs(2, 20, 1, 5, groups=groups, initial_state=True)
    args = [inp[k][..., 0] for k in ("u", "delta")] + [inp["A"], inp["B"][..., 0], inp["C"][..., 0]]
    opts = {"D": inp["D"], "z": inp["z"][..., 0], "dt_bias": inp["delta_bias"], "dt_softplus": True}
    state_ref, state = inp["initial_state"].clone(), inp["initial_state"].clone()
    y_ref = selective_state_update_ref(state_ref, *args, **opts)
    y = selective_state_update(state, *args, **opts, backend="triton")
    assert_close("y", y_ref, y, ratio=RATIO[torch.float32])
    assert_close("state", state_ref, state, ratio=RATIO[torch.float32])


@needs_triton
def test_triton_state_update_with_strided_parameters(nan_poison):
    """Mamba-2's decode step: A an expanded view (one value per head, stride 0), D and dt_bias strided views."""
    inp = selective_scan_inputs(2, 12, 1, 4, groups=2, initial_state=True)
    heads = torch.rand(3) + 0.5
    A = -heads.repeat_interleave(4)[:, None].expand(12, 4)
    D, dt_bias = torch.randn(12, 2)[:, 0], torch.randn(12, 3)[:, 1]
    args = [inp["u"][..., 0], inp["delta"][..., 0], A, inp["B"][..., 0], inp["C"][..., 0]]
    opts = {"D": D, "z": inp["z"][..., 0], "dt_bias": dt_bias, "dt_softplus": True}
    state_ref, state = inp["initial_state"].clone(), inp["initial_state"].clone()
    y_ref = selective_state_update_ref(state_ref, *args, **opts)
    y = selective_state_update(state, *args, **opts, backend="triton")
    assert_close("y", y_ref, y, ratio=RATIO[torch.float32])
    assert_close("state", state_ref, state, ratio=RATIO[torch.float32])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("b", "d", "l", "groups"), [(2, 1536, 4096, None), (1, 768, 2049, 2)])
def test_triton_matches_torch_backend_on_gpu(b, d, l, groups, dtype):
    """Real sizes on CUDA, against the chunked torch path (pinned to the reference by the tests above)."""
    inputs = selective_scan_inputs(b, d, l, 16, groups=groups, dtype=dtype, device="cuda", initial_state=True)
    opts = {"delta_softplus": True, "return_last_state": True}
    ref = outputs_and_grads(selective_scan, inputs, **opts, backend="torch")
    out = outputs_and_grads(selective_scan, inputs, **opts, backend="triton")
    assert_same_function(f"gpu scan {dtype}", ref, out, ratio=1e-4 if dtype == torch.float32 else RATIO[dtype])


@pytest.mark.gpu
def test_triton_state_update_on_gpu():
    inp = selective_scan_inputs(4, 1536, 1, 16, device="cuda", initial_state=True)
    args = [inp[k][..., 0] for k in ("u", "delta")] + [inp["A"], inp["B"][..., 0], inp["C"][..., 0]]
    opts = {"D": inp["D"], "z": inp["z"][..., 0], "dt_bias": inp["delta_bias"], "dt_softplus": True}
    state_ref, state = inp["initial_state"].clone(), inp["initial_state"].clone()
    y_ref = selective_state_update_ref(state_ref, *args, **opts)
    y = selective_state_update(state, *args, **opts, backend="triton")
    assert_close("y", y_ref, y, ratio=1e-5)
    assert_close("state", state_ref, state, ratio=1e-5)
