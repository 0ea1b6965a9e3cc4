"""HyenaOperator: upstream semantics, the beyond-l_max options, and the cached step path against forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from longseq.core.hyena import HyenaOperator, positional_features
from longseq.kernels.fftconv import direct_conv_ref

HYENADNA_KEYS = {
    "in_proj.weight",
    "in_proj.bias",
    "short_filter.weight",
    "short_filter.bias",
    "filter_fn.bias",
    "filter_fn.pos_emb.z",
    "filter_fn.pos_emb.t",
    "filter_fn.implicit_filter.0.weight",
    "filter_fn.implicit_filter.0.bias",
    "filter_fn.implicit_filter.1.freq",
    "filter_fn.implicit_filter.2.weight",
    "filter_fn.implicit_filter.2.bias",
    "filter_fn.implicit_filter.3.freq",
    "filter_fn.implicit_filter.4.weight",
    "filter_fn.implicit_filter.4.bias",
    "filter_fn.implicit_filter.5.freq",
    "filter_fn.implicit_filter.6.weight",
    "filter_fn.modulation.deltas",
    "out_proj.weight",
    "out_proj.bias",
}


def make(d=8, l_max=24, **kw) -> HyenaOperator:
    op = HyenaOperator(d, l_max=l_max, filter_order=16, dtype=torch.float64, **kw).eval()
    # Larger filter-MLP weights than the default init, so the long filter matters at every lag.
    with torch.no_grad():
        for layer in op.filter_fn.implicit_filter:
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0, 0.5)
    return op


def upstream_forward(op: HyenaOperator, x: torch.Tensor, filter_taps: torch.Tensor) -> torch.Tensor:
    """HyenaDNA's HyenaOperator.forward written out: nn.Conv1d + slice, split, direct causal convolution."""
    l = x.shape[1]
    u = op.in_proj(x).transpose(1, 2)
    uc = op.short_filter(u)[..., :l]
    x0, x1, v = uc.split(op.d_model, dim=1)
    v = direct_conv_ref(v * x1, filter_taps, op.filter_fn.bias)
    return op.out_proj((v * x0).transpose(1, 2))


def reference_taps(op: HyenaOperator, l: int) -> torch.Tensor:
    """The filter as upstream computes it: MLP over the positional features, times the decay window (float64
    arithmetic on the float32 features, so the module's float32 window leaves differences around 1e-8)."""
    f = op.filter_fn
    z, t = f.pos_emb.z[:, :l], f.pos_emb.t[:, :l]
    if l > f.l_max:  # the same normalisation, continued
        z_more, t_more = positional_features(f.pos_emb.emb_dim, f.l_max, f.l_max, l)
        z, t = torch.cat([z, z_more], dim=1), torch.cat([t, t_more], dim=1)
    z, t = z.double(), t.double()
    h = f.implicit_filter(z) * (torch.exp(-t * f.modulation.deltas.abs()) + f.modulation.shift)
    return h[0].T


def test_parameter_names_and_sharing_match_hyenadna():
    op = HyenaOperator(16, l_max=32)
    state = op.state_dict()
    assert set(state) == HYENADNA_KEYS
    assert state["filter_fn.implicit_filter.1.freq"].data_ptr() == state["filter_fn.implicit_filter.5.freq"].data_ptr()
    assert state["filter_fn.pos_emb.z"].shape == (1, 32, 5)
    assert state["filter_fn.modulation.deltas"].shape == (1, 1, 16)
    assert [n for n, p in op.named_parameters() if getattr(p, "_no_weight_decay", False)] == [
        n for n, _ in op.named_parameters() if n.startswith("filter_fn.")
    ]


def test_positional_features_match_the_upstream_construction():
    z, t = positional_features(5, 40, 0, 40)
    z_ext, t_ext = positional_features(5, 40, 3, 40)  # the float64 formula used beyond l_max
    torch.testing.assert_close(z_ext, z[:, 3:], atol=1e-6, rtol=0)
    torch.testing.assert_close(t_ext, t[:, 3:], atol=1e-6, rtol=0)
    assert z[0, 0].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("l", [24, 17, 1])
def test_forward_matches_upstream_semantics(l):
    op = make()
    x = torch.randn(2, l, 8, dtype=torch.float64)
    expected = upstream_forward(op, x, reference_taps(op, l))
    torch.testing.assert_close(op(x), expected, atol=1e-6, rtol=1e-6)


def test_longer_than_l_max_is_refused_by_default():
    op = make()
    with pytest.raises(ValueError, match="exceeds the Hyena filter's l_max=24"):
        op(torch.randn(1, 25, 8, dtype=torch.float64))


def test_zero_beyond_l_max_keeps_the_trained_filter_support():
    op = make(beyond_l_max="zero")
    x = torch.randn(2, 61, 8, dtype=torch.float64)
    y = op(x)
    torch.testing.assert_close(y, upstream_forward(op, x, reference_taps(op, 24)), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(y[:, :24], op(x[:, :24]), atol=1e-10, rtol=1e-10)


def test_extrapolate_beyond_l_max_evaluates_the_filter_further():
    op = make(beyond_l_max="extrapolate")
    x = torch.randn(2, 61, 8, dtype=torch.float64)
    y = op(x)
    torch.testing.assert_close(y, upstream_forward(op, x, reference_taps(op, 61)), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(y[:, :24], op(x[:, :24]), atol=1e-10, rtol=1e-10)


def test_every_parameter_gets_a_gradient():
    op = HyenaOperator(8, l_max=16, filter_order=16, dropout=0.1)
    op(torch.randn(2, 16, 8)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in op.parameters())


@pytest.mark.parametrize(("beyond", "l", "m"), [("error", 23, 24), ("zero", 45, 45), ("extrapolate", 37, 40)])
def test_step_loop_equals_forward(beyond, l, m):
    op = make(beyond_l_max=beyond)
    x = torch.randn(3, l, 8, dtype=torch.float64)
    expected = op(x)
    state = op.init_state(3, max_seqlen=m, dtype=torch.float64)
    with torch.no_grad():
        steps = torch.stack([op.step(x_t, state) for x_t in x.unbind(1)], dim=1)
    torch.testing.assert_close(steps, expected, atol=1e-6, rtol=1e-6)
    assert state.seqlen == l


def test_chunks_and_steps_mixed_equal_forward():
    op = make(beyond_l_max="zero")
    x = torch.randn(2, 50, 8, dtype=torch.float64)
    expected = op(x)
    state = op.init_state(2, max_seqlen=50, dtype=torch.float64)
    pieces, t = [], 0
    for size in [7, 1, 1, 1, 12, 1, 1, 1, 1, 1, 20, 3]:
        if size == 1:
            pieces.append(op.step(x[:, t], state)[:, None])
        else:
            pieces.append(op(x[:, t : t + size], state))
        t += size
    torch.testing.assert_close(torch.cat(pieces, dim=1), expected, atol=1e-6, rtol=1e-6)


def test_a_full_state_is_refused():
    op = make()
    state = op.init_state(1, max_seqlen=4, dtype=torch.float64)
    op(torch.randn(1, 4, 8, dtype=torch.float64), state)
    with pytest.raises(ValueError, match="full"):
        op.step(torch.randn(1, 8, dtype=torch.float64), state)
    with pytest.raises(ValueError, match="exceeds"):
        make().init_state(1, max_seqlen=25)


@pytest.mark.parametrize(("beyond", "l"), [("error", 24), ("error", 5), ("zero", 40), ("extrapolate", 33)])
def test_cpu_path_equals_the_kernel_path_outputs_and_gradients(beyond, l, monkeypatch):
    """`_forward_torch` (channels-last short conv, padded FFT input) against the kernels' reference backend."""
    op = make(beyond_l_max=beyond)
    x = torch.randn(2, l, 8, dtype=torch.float64)

    def run():
        op.zero_grad()
        xg = x.clone().requires_grad_()
        y = op(xg)
        y.mul(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        return y.detach(), [xg.grad, *(p.grad for p in op.parameters())]

    fast, fast_grads = run()
    monkeypatch.setenv("LONGSEQ_BACKEND", "reference")
    ref, ref_grads = run()
    torch.testing.assert_close(fast, ref, atol=1e-10, rtol=1e-10)
    for got, want in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_the_cached_filter_spectrum_follows_the_weights():
    """With gradients off the filter's FFT is computed once per length, and any write to the filter's
    tensors (an optimizer step, load_state_dict) makes the next call recompute it."""
    op = make()
    x = torch.randn(2, 24, 8, dtype=torch.float64)
    with torch.no_grad():
        first = op(x)
        cached = op._spectrum[1]
        assert op(x).equal(first) and op._spectrum[1] is cached
        op(x[:, :10])
        assert op._spectrum[0][0] == 10
        op.filter_fn.implicit_filter[0].weight.add_(0.1)
        changed = op(x)
    torch.testing.assert_close(changed, op(x), atol=1e-12, rtol=0)  # grad on: no cache
    assert not changed.allclose(first)
    fresh = make()
    with torch.no_grad():
        fresh(x)
    fresh.load_state_dict(op.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(fresh(x), changed, atol=1e-12, rtol=0)
