"""Attention: SDPA path == manual reference (outputs, gradients), cached decoding == parallel forward,
GQA == expanded MHA, masks (causal, window, padding) leak nothing."""

import pytest
import torch

from longseq.core.attention import Attention, KVCache

CONFIGS = {
    "causal": {},
    "bidirectional": {"causal": False},
    "window": {"window": 5},
    "bidirectional-window": {"causal": False, "window": 4},
    "gqa-rotary": {"num_heads_kv": 2, "rotary_emb_dim": 8},
    "mqa-rotary-interleaved-window": {
        "num_heads_kv": 1,
        "rotary_emb_dim": 4,
        "rotary_emb_interleaved": True,
        "window": 3,
    },
}


def make(d_model=32, num_heads=4, **kwargs):
    return Attention(d_model, num_heads, dtype=torch.float64, **kwargs)


def paths_agree(attn: Attention, run):
    """Run ``run(attn)`` (returning an output) with both backends; compare outputs and all gradients."""
    results = []
    for backend in ("sdpa", "manual"):
        attn.backend = backend
        attn.zero_grad()
        out = run(attn)
        out.pow(2).sum().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in attn.named_parameters()}))
    (out_a, grads_a), (out_b, grads_b) = results
    torch.testing.assert_close(out_a, out_b)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name)
    return out_a


@pytest.mark.parametrize("name", CONFIGS)
def test_sdpa_equals_manual(name):
    attn = make(**CONFIGS[name])
    x = torch.randn(2, 13, 32, dtype=torch.float64, requires_grad=True)
    paths_agree(attn, lambda a: a(x))


def test_sdpa_equals_manual_with_masks():
    attn = make(num_heads_kv=2)
    x = torch.randn(3, 9, 32, dtype=torch.float64)
    padding = torch.ones(3, 9, dtype=torch.bool)
    padding[0, :4] = False  # left padding: queries 0..3 of sample 0 see no key
    padding[1, 7:] = False
    user = torch.rand(9, 9) > 0.3
    out = paths_agree(attn, lambda a: a(x, key_padding_mask=padding, attn_mask=user))
    assert torch.isfinite(out).all()
    # queries that may attend nothing get a zero context, so only the output bias remains
    assert torch.equal(out[0, :4], attn.out_proj.bias.detach().expand(4, -1))


@pytest.mark.parametrize("name", ["causal", "window", "gqa-rotary", "mqa-rotary-interleaved-window"])
def test_step_loop_equals_parallel_forward(name):
    attn = make(**CONFIGS[name]).eval()
    x = torch.randn(2, 17, 32, dtype=torch.float64)
    full = attn(x)
    state = attn.init_state(2)
    steps = torch.stack([attn.step(x[:, t], state) for t in range(17)], dim=1)
    torch.testing.assert_close(steps, full)
    assert state.seqlen == 17


@pytest.mark.parametrize("name", ["causal", "window", "mqa-rotary-interleaved-window"])
@pytest.mark.parametrize("max_seqlen", [None, 40])
def test_chunked_prefill_then_steps_equals_parallel_forward(name, max_seqlen):
    attn = make(**CONFIGS[name]).eval()
    x = torch.randn(2, 23, 32, dtype=torch.float64)
    full = attn(x)
    state = attn.init_state(2, max_seqlen=max_seqlen)
    parts = [attn(x[:, :7], state), attn(x[:, 7:8], state), attn(x[:, 8:19], state)]
    parts += [attn.step(x[:, t], state).unsqueeze(1) for t in range(19, 23)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full)


def test_sliding_window_cache_has_constant_memory():
    attn = make(window=6).eval()
    state = attn.init_state(1)
    for _ in range(50):
        attn.step(torch.randn(1, 32, dtype=torch.float64), state)
    attn(torch.randn(1, 20, 32, dtype=torch.float64), state)
    assert state.k.shape == state.v.shape == (1, 4, 6, 8)
    assert state.seqlen == 70


def test_full_cache_grows_when_no_max_seqlen():
    attn = make().eval()
    state = attn.init_state(1)
    attn(torch.randn(1, 100, 32, dtype=torch.float64), state)
    assert isinstance(state, KVCache) and state.k.shape[2] >= 100


def test_gqa_equals_expanded_mha():
    gqa = make(num_heads=4, num_heads_kv=2, rotary_emb_dim=8)
    mha = make(num_heads=4, rotary_emb_dim=8)
    p, h, hkv = 8, 4, 2
    q_w, k_w, v_w = gqa.in_proj.weight.split([h * p, hkv * p, hkv * p])
    q_b, k_b, v_b = gqa.in_proj.bias.split([h * p, hkv * p, hkv * p])

    def expand(t):  # KV head j serves query heads 2j and 2j+1
        return t.view(hkv, p, *t.shape[1:]).repeat_interleave(h // hkv, dim=0).reshape(h * p, *t.shape[1:])

    with torch.no_grad():
        mha.in_proj.weight.copy_(torch.cat((q_w, expand(k_w), expand(v_w))))
        mha.in_proj.bias.copy_(torch.cat((q_b, expand(k_b), expand(v_b))))
        mha.out_proj.load_state_dict(gqa.out_proj.state_dict())
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    torch.testing.assert_close(gqa(x), mha(x))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_parameter_gets_a_gradient(name):
    attn = Attention(32, 4, **CONFIGS[name])
    attn(torch.randn(2, 9, 32)).sum().backward()
    for param_name, param in attn.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name", ["causal", "window", "gqa-rotary"])
def test_no_future_leak(name):
    attn = make(**CONFIGS[name])
    x = torch.randn(1, 15, 32, dtype=torch.float64)
    t = 8
    y = x.clone()
    y[:, t] += torch.randn(32, dtype=torch.float64)
    out_x, out_y = attn(x), attn(y)
    torch.testing.assert_close(out_x[:, :t], out_y[:, :t], rtol=0, atol=0)
    assert not torch.allclose(out_x[:, t], out_y[:, t])


def test_window_limits_the_past():
    attn = make(window=4)
    x = torch.randn(1, 15, 32, dtype=torch.float64)
    y = x.clone()
    y[:, 3] += 1.0
    out_x, out_y = attn(x), attn(y)
    assert not torch.allclose(out_x[:, 3:7], out_y[:, 3:7])  # positions 3..6 see position 3
    torch.testing.assert_close(out_x[:, 7:], out_y[:, 7:], rtol=0, atol=0)


def test_padding_gives_the_unpadded_result():
    attn = make(causal=False).eval()
    x = torch.randn(1, 6, 32, dtype=torch.float64)
    padded = torch.cat((x, torch.randn(1, 3, 32, dtype=torch.float64)), dim=1)
    keep = torch.tensor([[True] * 6 + [False] * 3])
    torch.testing.assert_close(attn(padded, key_padding_mask=keep)[:, :6], attn(x))


def test_left_padding_causal_gives_the_unpadded_result():
    attn = make(rotary_emb_dim=0).eval()
    x = torch.randn(1, 6, 32, dtype=torch.float64)
    padded = torch.cat((torch.randn(1, 3, 32, dtype=torch.float64), x), dim=1)
    keep = torch.tensor([[False] * 3 + [True] * 6])
    torch.testing.assert_close(attn(padded, key_padding_mask=keep)[:, 3:], attn(x))


def test_prefix_mask_with_cache():
    """A prefix-LM mask (first 4 tokens see each other) in a prefill, then causal steps."""
    attn = make(causal=False).eval()
    x = torch.randn(1, 10, 32, dtype=torch.float64)
    mask = torch.ones(10, 10).tril().bool()
    mask[:4, :4] = True
    full = attn(x, attn_mask=mask)
    state = attn.init_state(1)
    prefix = attn(x[:, :4], state, attn_mask=mask[:4, :4])
    steps = [attn.step(x[:, t], state).unsqueeze(1) for t in range(4, 10)]
    torch.testing.assert_close(torch.cat([prefix, *steps], dim=1), full)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_heads": 4, "num_heads_kv": 3}, "multiple"),
        ({"num_heads": 5}, "divisible"),
        ({"num_heads": 4, "window": 0}, "window"),
        ({"num_heads": 4, "rotary_emb_dim": 16}, "rotary"),
        ({"num_heads": 4, "backend": "flash"}, "backend"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Attention(32, **kwargs)


def test_rejects_masks_it_cannot_honour():
    attn = make(window=3)
    state = attn.init_state(1)
    x = torch.randn(1, 4, 32, dtype=torch.float64)
    with pytest.raises(ValueError, match="key_padding_mask"):
        attn(x, state, key_padding_mask=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="attn_mask"):
        attn(x, state, attn_mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="boolean"):
        attn(x, attn_mask=torch.ones(4, 4))
