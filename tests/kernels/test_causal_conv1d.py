"""Short causal depthwise conv: the reference against an explicit shifted sum in float64, the decode update
loop against the full conv (initial and final states), every backend against the reference, and bad inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from longseq.kernels import causal_conv1d, causal_conv1d_update
from longseq.kernels._testing import RATIO, assert_close, assert_same_function, has_triton, outputs_and_grads
from longseq.kernels.causal_conv1d import causal_conv1d_ref

F64 = torch.float64


def shifted_sum_conv(x, weight, bias=None, initial_states=None, return_final_states=False, activation=None):
    """y_t = bias + sum_k weight[:, k] * x_{t - (w - 1) + k}: w shifted copies, no conv routine."""
    b, d, l = x.shape
    w = weight.shape[1]
    history = x.new_zeros(b, d, w - 1) if initial_states is None else initial_states
    xp = torch.cat([history, x], dim=-1)
    y = sum(weight[:, k, None] * xp[..., k : k + l] for k in range(w))
    if bias is not None:
        y = y + bias[:, None]
    if activation is not None:
        y = F.silu(y)
    return (y, xp[..., l:]) if return_final_states else y


def conv_inputs(b, d, l, w, *, dtype=torch.float32, bias=True, initial_states=False):
    return {
        "x": torch.randn(b, d, l, dtype=dtype),
        "weight": torch.randn(d, w, dtype=dtype) / w**0.5,
        "bias": torch.randn(d, dtype=dtype) if bias else None,
        "initial_states": torch.randn(b, d, w - 1, dtype=dtype) if initial_states else None,
    }


@pytest.mark.parametrize("l", [1, 2, 63, 257])
@pytest.mark.parametrize("w", [2, 4])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_reference_matches_shifted_sum_float64(l, w, activation):
    inputs = conv_inputs(2, 5, l, w, dtype=F64, initial_states=True)
    opts = {"return_final_states": True, "activation": activation}
    ref = outputs_and_grads(causal_conv1d_ref, inputs, **opts)
    oracle = outputs_and_grads(shifted_sum_conv, inputs, **opts)
    assert_same_function(f"causal_conv1d_ref l={l} w={w}", oracle, ref, ratio=1e-12)


def test_reference_without_bias_or_initial_states():
    inputs = conv_inputs(1, 3, 20, 4, dtype=F64, bias=False)
    ref = outputs_and_grads(causal_conv1d_ref, inputs, activation="swish")
    oracle = outputs_and_grads(shifted_sum_conv, inputs, activation="silu")
    assert_same_function("causal_conv1d_ref plain", oracle, ref, ratio=1e-12)


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("extra_state", [0, 3])
@pytest.mark.parametrize("tokens_per_step", [1, 3, 5])
def test_update_loop_matches_full_conv(extra_state, tokens_per_step, backend):
    b, d, l, w = 2, 5, 12, 4
    inputs = conv_inputs(b, d, l, w, dtype=F64)
    history = torch.randn(b, d, w - 1 + extra_state, dtype=F64)
    y_full, final = causal_conv1d_ref(
        **{**inputs, "initial_states": history[..., -(w - 1) :]}, return_final_states=True, activation="silu"
    )
    state = history.clone()
    ys = []
    for x_t in inputs["x"].split(tokens_per_step, dim=-1):
        step_in = x_t[..., 0] if tokens_per_step == 1 else x_t
        y_t = causal_conv1d_update(step_in, state, inputs["weight"], inputs["bias"], activation="silu", backend=backend)
        ys.append(y_t.unsqueeze(-1) if tokens_per_step == 1 else y_t)
    assert_close("update outputs", y_full, torch.cat(ys, dim=-1), ratio=1e-12)
    assert_close("final state", final, state[..., -(w - 1) :], ratio=1e-12)
    assert_close("whole window", torch.cat([history, inputs["x"]], -1)[..., -state.shape[-1] :], state, ratio=1e-12)


def test_final_states_of_a_short_sequence_include_the_initial_states():
    inputs = conv_inputs(1, 3, 1, 4, initial_states=True)
    _, final = causal_conv1d(**inputs, return_final_states=True)
    assert torch.equal(final, torch.cat([inputs["initial_states"][..., 1:], inputs["x"]], dim=-1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x": torch.zeros(2, 3)}, "expected x"),
        ({"weight": torch.zeros(4, 4)}, "expected x"),
        ({"bias": torch.zeros(4)}, "bias must be"),
        ({"initial_states": torch.zeros(1, 3, 2)}, "initial_states must be"),
        ({"activation": "relu"}, "activation"),
    ],
)
def test_conv_rejects_bad_inputs(change, message):
    with pytest.raises(ValueError, match=message):
        causal_conv1d(**{**conv_inputs(1, 3, 6, 4), **change})


def test_update_rejects_bad_inputs():
    weight = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="conv_state"):
        causal_conv1d_update(torch.zeros(1, 3), torch.zeros(1, 3, 2), weight)
    with pytest.raises(ValueError, match="conv_state"):
        causal_conv1d_update(torch.zeros(1, 3), torch.zeros(2, 3, 3), weight)
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d_update(torch.zeros(1, 3), torch.zeros(1, 3, 3), weight, activation="gelu")
    with pytest.raises(ValueError, match="weight"):
        causal_conv1d_update(torch.zeros(1, 3), torch.zeros(1, 3, 3), torch.zeros(4, 4))


needs_triton = pytest.mark.skipif(not has_triton(), reason="triton is not installed")


@needs_triton
@pytest.mark.parametrize(
    ("l", "w", "init", "activation"), [(1, 4, True, "silu"), (70, 4, True, None), (67, 3, False, "silu")]
)
def test_triton_matches_reference(l, w, init, activation, nan_poison):
    """Under TRITON_INTERPRET=1 on the CPU: outputs, final states, every input gradient."""
    inputs = conv_inputs(2, 20, l, w, initial_states=init)
    opts = {"return_final_states": True, "activation": activation}
    ref = outputs_and_grads(causal_conv1d_ref, inputs, **opts)
    out = outputs_and_grads(causal_conv1d, inputs, **opts, backend="triton")
    assert_same_function(f"triton conv l={l}", ref, out, ratio=RATIO[torch.float32])


@needs_triton
@pytest.mark.parametrize(("tokens", "state_len"), [(1, 3), (3, 5), (7, 5)])
def test_triton_update_matches_reference(tokens, state_len, nan_poison):
    x, weight, bias = torch.randn(2, 20, tokens), torch.randn(20, 4), torch.randn(20)
    state = torch.randn(2, 20, state_len)
    state_ref = state.clone()
    step_in = x[..., 0] if tokens == 1 else x
    y_ref = causal_conv1d_update(step_in, state_ref, weight, bias, "silu", backend="reference")
    y = causal_conv1d_update(step_in, state, weight, bias, "silu", backend="triton")
    assert_close("y", y_ref, y, ratio=RATIO[torch.float32])
    assert_close("state", state_ref, state, ratio=RATIO[torch.float32])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_reference_on_gpu(dtype):
    inputs = {k: v.to("cuda", dtype) for k, v in conv_inputs(4, 1536, 4097, 4, initial_states=True).items()}
    opts = {"return_final_states": True, "activation": "silu"}
    ref = outputs_and_grads(causal_conv1d, inputs, **opts, backend="reference")
    out = outputs_and_grads(causal_conv1d, inputs, **opts, backend="triton")
    assert_same_function(f"gpu conv {dtype}", ref, out, ratio=RATIO[dtype])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_update_matches_reference_on_gpu(dtype):
    x = torch.randn(16, 3072, 2, device="cuda", dtype=dtype)
    weight, bias = torch.randn(3072, 4, device="cuda", dtype=dtype), torch.randn(3072, device="cuda", dtype=dtype)
    state = torch.randn(16, 3072, 3, device="cuda", dtype=dtype)
    state_ref = state.clone()
    y_ref = causal_conv1d_update(x, state_ref, weight, bias, "silu", backend="reference")
    y = causal_conv1d_update(x, state, weight, bias, "silu", backend="triton")
    assert_close("y", y_ref, y, ratio=RATIO[dtype])
    assert torch.equal(state_ref, state)


@pytest.mark.parametrize("l", [1, 2, 63])
@pytest.mark.parametrize("w", [1, 3, 4])
@pytest.mark.parametrize(("bias", "activation"), [(True, None), (False, None), (True, "silu")])
def test_channels_last_conv_matches_reference(l, w, bias, activation):
    """The CPU short conv of HyenaOperator and Mamba in the (b, l, d) layout, outputs and gradients."""
    from longseq.kernels.causal_conv1d.torch_conv import causal_conv1d_channels_last

    inputs = conv_inputs(2, 5, l, w, dtype=F64, bias=bias)
    del inputs["initial_states"]
    ref = outputs_and_grads(causal_conv1d_ref, inputs, activation=activation)
    inputs["x"] = inputs["x"].transpose(1, 2).contiguous()
    out = outputs_and_grads(
        lambda x, **kw: causal_conv1d_channels_last(x, **kw).transpose(1, 2), inputs, activation=activation
    )
    out[1]["x"] = out[1]["x"].transpose(1, 2)
    assert_same_function(f"channels-last conv l={l} w={w}", ref, out, ratio=RATIO[F64])
