"""Mamba and Mamba2 mixers: upstream parameter layout, gradients, step loop = forward, state continuation, bf16."""

import math

import pytest
import torch
import torch.nn.functional as F

from longseq.core.ssm import Mamba, Mamba2, Mamba2State, MambaState


def tiny(kind: str, **overrides):
    if kind == "mamba":
        return Mamba(16, **{"d_state": 8, **overrides})
    return Mamba2(16, **{"d_state": 8, "headdim": 8, "ngroups": 2, "chunk_size": 8, **overrides})


MIXERS = ["mamba", "mamba2"]
# bfloat16 against float32 (rtol, atol): bfloat16's own rtol (torch.testing's default, 1.6e-2), and twice the
# largest error beyond it over 200 random inits (1.3e-3 for Mamba; 1.5e-2 for Mamba2, whose outputs reach 1.7
# and pass through its gated RMSNorm).
BF16_TOLERANCE = {"mamba": (1.6e-2, 2.6e-3), "mamba2": (1.6e-2, 3.0e-2)}


def test_mamba_parameter_names_and_shapes_match_mamba_ssm():
    m = Mamba(64, d_state=16, d_conv=4, expand=2)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (256, 64),
        "conv1d.weight": (128, 1, 4),
        "conv1d.bias": (128,),
        "x_proj.weight": (4 + 32, 128),
        "dt_proj.weight": (128, 4),
        "dt_proj.bias": (128,),
        "A_log": (128, 16),
        "D": (128,),
        "out_proj.weight": (64, 128),
    }


def test_mamba2_parameter_names_and_shapes_match_mamba_ssm():
    m = Mamba2(64, d_state=16, headdim=16, ngroups=2)  # d_inner 128, 8 heads
    conv_dim = 128 + 2 * 2 * 16
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (2 * 128 + 2 * 2 * 16 + 8, 64),
        "conv1d.weight": (conv_dim, 1, 4),
        "conv1d.bias": (conv_dim,),
        "dt_bias": (8,),
        "A_log": (8,),
        "D": (8,),
        "norm.weight": (128,),
        "out_proj.weight": (64, 128),
    }
    assert Mamba2(64, d_state=16, headdim=16, D_has_hdim=True).D.shape == (128,)


def test_initialisation_as_upstream():
    m = Mamba(32, d_state=8, dt_min=1e-3, dt_max=0.1)
    assert torch.equal(m.A_log, torch.log(torch.arange(1, 9, dtype=torch.float32)).repeat(64, 1))
    assert torch.equal(m.D, torch.ones(64))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    bound = m.dt_rank**-0.5
    assert m.dt_proj.weight.abs().max() <= bound and m.dt_rank == math.ceil(32 / 16)
    assert m.dt_proj.bias._no_reinit
    m2 = Mamba2(32, d_state=8, headdim=8, A_init_range=(1, 16))
    A = torch.exp(m2.A_log)
    assert A.min() >= 1 and A.max() <= 16
    dt2 = F.softplus(m2.dt_bias)
    assert dt2.min() >= 1e-3 * (1 - 1e-4) and dt2.max() <= 0.1 * (1 + 1e-4)
    for mixer in (m, m2):
        assert mixer.A_log._no_weight_decay and mixer.D._no_weight_decay
        assert mixer.A_log.dtype == torch.float32 and mixer.D.dtype == torch.float32


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="headdim"):
        Mamba2(16, headdim=12)
    with pytest.raises(ValueError, match="ngroups"):
        Mamba2(16, headdim=8, ngroups=3)
    with pytest.raises(ValueError, match="dt_rank"):
        Mamba(16, dt_rank=0)
    with pytest.raises(ValueError, match="dt_init"):
        Mamba(16, dt_init="zeros")


@pytest.mark.parametrize("kind", MIXERS)
def test_shapes_and_every_parameter_gets_a_gradient(kind):
    m = tiny(kind)
    x = torch.randn(2, 19, 16, requires_grad=True)
    y = m(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", MIXERS)
def test_step_loop_equals_forward(kind):
    m = tiny(kind)
    x = torch.randn(3, 21, 16)
    with torch.no_grad():
        expected = m(x)
        state = m.init_state(3)
        steps = torch.stack([m.step(x_t, state) for x_t in x.unbind(1)], dim=1)
    torch.testing.assert_close(steps, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", MIXERS)
def test_forward_with_state_continues_the_sequence(kind):
    """forward(prefix, state) then forward(rest, state) and then steps equal one forward over everything."""
    m = tiny(kind)
    x = torch.randn(2, 30, 16)
    with torch.no_grad():
        expected = m(x)
        state = m.init_state(2)
        assert isinstance(state, MambaState if kind == "mamba" else Mamba2State)
        first = m(x[:, :2], state)  # shorter than the conv width
        second = m(x[:, 2:17], state)
        rest = [m.step(x_t, state) for x_t in x[:, 17:].unbind(1)]
    got = torch.cat([first, second, torch.stack(rest, dim=1)], dim=1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", MIXERS)
def test_forward_with_state_keeps_gradients_of_the_chunk(kind):
    """A later in-place step on the state must not break the backward of an earlier chunk."""
    m = tiny(kind)
    x = torch.randn(2, 12, 16)
    state = m.init_state(2)
    y = m(x, state)
    with torch.no_grad():
        m.step(torch.randn(2, 16), state)
    y.sum().backward()
    assert m.in_proj.weight.grad is not None


def test_mamba2_matches_a_sequential_reading_of_the_upstream_math():
    """The module against a per-token loop written from mamba_ssm's Mamba2 equations (D per channel, 2 groups)."""
    m = tiny("mamba2", D_has_hdim=True)
    with torch.no_grad():
        m.D.uniform_(0.5, 1.5)
        m.norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 11, 16)
    h, p, n, g = m.nheads, m.headdim, m.d_state, m.ngroups
    with torch.no_grad():
        z, xBC, dt = m.in_proj(x).split([m.d_inner, m.conv_dim, h], dim=-1)
        xBC = F.silu(m.conv1d(xBC.transpose(1, 2))[..., : x.shape[1]]).transpose(1, 2)
        xs, B, C = xBC.split([m.d_inner, g * n, g * n], dim=-1)
        xs, B, C = xs.view(2, 11, h, p), B.view(2, 11, g, n), C.view(2, 11, g, n)
        dt = F.softplus(dt + m.dt_bias)
        A = -torch.exp(m.A_log)
        S = torch.zeros(2, h, p, n)
        ys = []
        for t in range(11):
            Bt = B[:, t].repeat_interleave(h // g, dim=1)  # head i uses group i // (h / g)
            Ct = C[:, t].repeat_interleave(h // g, dim=1)
            decay = torch.exp(dt[:, t] * A)[..., None, None]
            S = decay * S + (dt[:, t, :, None] * xs[:, t])[..., None] * Bt[:, :, None]
            ys.append((S * Ct[:, :, None]).sum(-1) + m.D.view(h, p) * xs[:, t])
        y = torch.stack(ys, dim=1).flatten(-2) * F.silu(z)
        groups = y.unflatten(-1, (g, m.d_inner // g))
        y = (groups * torch.rsqrt(groups.square().mean(-1, keepdim=True) + 1e-5)).flatten(-2) * m.norm.weight
        expected = m.out_proj(y)
        got = m(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", MIXERS)
def test_bfloat16_forward_backward_and_step(kind):
    m = tiny(kind)
    x = torch.randn(2, 13, 16)
    with torch.no_grad():
        ref = m(x)
    m = m.to(torch.bfloat16)
    xb = x.to(torch.bfloat16).requires_grad_()
    y = m(xb)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert torch.isfinite(xb.grad.float()).all()
    rtol, atol = BF16_TOLERANCE[kind]
    torch.testing.assert_close(y.float(), ref, rtol=rtol, atol=atol)
    with torch.no_grad():
        state = m.init_state(2)
        assert state.ssm.dtype == torch.float32 and state.conv.dtype == torch.bfloat16
        y_step = m.step(xb[:, 0].detach(), state)
    assert y_step.dtype == torch.bfloat16 and torch.isfinite(y_step.float()).all()


def test_gated_rmsnorm_both_gate_orders_and_groups():
    from longseq.core.norm import GatedRMSNorm

    norm = GatedRMSNorm(12, group_size=4, norm_before_gate=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x, z = torch.randn(3, 12), torch.randn(3, 12)
    g = x.view(3, 3, 4)
    normed = (g / g.square().mean(-1, keepdim=True).add(1e-5).sqrt()).view(3, 12) * norm.weight
    torch.testing.assert_close(norm(x, z), normed * F.silu(z))
    norm.norm_before_gate = False
    gx = (x * F.silu(z)).view(3, 3, 4)
    torch.testing.assert_close(
        norm(x, z), (gx / gx.square().mean(-1, keepdim=True).add(1e-5).sqrt()).view(3, 12) * norm.weight
    )
    with pytest.raises(ValueError, match="group_size"):
        GatedRMSNorm(12, group_size=5)


def test_mamba_cpu_path_equals_the_kernel_path_outputs_and_gradients(monkeypatch):
    """`Mamba._mix_torch` (channels-last short conv, time-major scan) against the kernels' reference backend,
    in float32 (Mamba computes A in float32, as mamba_ssm): the paths differ only in rounding order."""
    m = tiny("mamba")
    x = torch.randn(2, 21, 16)

    def run():
        m.zero_grad()
        xg = x.clone().requires_grad_()
        y = m(xg)
        y.mul(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        return y.detach(), [xg.grad, *(p.grad for p in m.parameters())]

    fast, fast_grads = run()
    monkeypatch.setenv("LONGSEQ_BACKEND", "reference")
    ref, ref_grads = run()
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=1e-5)
    for got, want in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
