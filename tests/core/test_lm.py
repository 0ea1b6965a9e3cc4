"""The causal LM: mamba_ssm layout, mixer patterns, step/prefill = forward, cached generation = uncached greedy."""

import math

import pytest
import torch

from longseq.core.io import InputError
from longseq.core.lm import (
    PRESETS,
    AttentionOptions,
    CausalLM,
    HyenaOptions,
    LMConfig,
    Mamba2Options,
    MambaOptions,
    sample_next,
)

TINY_MAMBA2 = Mamba2Options(d_state=8, headdim=8, ngroups=2, chunk_size=8)
TINY_ATTENTION = AttentionOptions(num_heads=4, num_heads_kv=2, window=5, rotary_emb_dim=4)
TINY_HYENA = HyenaOptions(l_max=64, filter_order=16)


def tiny(mixer="mamba", **overrides) -> CausalLM:
    values = {
        "vocab_size": 37,
        "d_model": 16,
        "n_layer": 2,
        "mamba": MambaOptions(d_state=8),
        "mamba2": TINY_MAMBA2,
        "attention": TINY_ATTENTION,
        "hyena": TINY_HYENA,
    }
    config = LMConfig(**{**values, "mixer": mixer, **overrides})
    return CausalLM(config).eval()


# Pure SSMs, and hybrids with sliding-window attention (window 5 < the test lengths), full attention and Hyena.
PATTERNS = ["mamba", "mamba2", ["mamba2", "mamba"], ["mamba", "swa"], ["attention", "mamba2"], ["hyena", "mamba"]]
PATTERN_IDS = [p if isinstance(p, str) else "+".join(p) for p in PATTERNS]


def greedy_without_cache(model: CausalLM, ids: torch.Tensor, n: int) -> torch.Tensor:
    """The obvious generation loop: a full forward over everything for every new token."""
    for _ in range(n):
        logits = model(ids)[:, -1, : model.config.vocab_size]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


def test_config_validation_and_patterns():
    config = LMConfig(vocab_size=50277, d_model=8, n_layer=6, mixer=["mamba", "mamba", "mamba2"])
    assert config.padded_vocab_size == 50280
    assert config.layer_kinds() == ["mamba", "mamba", "mamba2"] * 2
    assert LMConfig(vocab_size=5, d_model=8, n_layer=3).layer_kinds() == ["mamba"] * 3
    from_json = LMConfig(vocab_size=5, d_model=8, n_layer=1, mamba={"d_state": 4}, mamba2={"headdim": 4})
    assert from_json.mamba == MambaOptions(d_state=4) and from_json.mamba2.headdim == 4
    with pytest.raises(ValueError, match="unknown mixer"):
        LMConfig(vocab_size=5, d_model=8, n_layer=2, mixer="lstm")
    with pytest.raises(ValueError, match="does not divide"):
        LMConfig(vocab_size=5, d_model=8, n_layer=4, mixer=["mamba", "mamba", "mamba2"])
    with pytest.raises(ValueError, match="vocab_size"):
        LMConfig(vocab_size=0, d_model=8, n_layer=1)
    with pytest.raises(TypeError):
        LMConfig(vocab_size=5, d_model=8, n_layer=1, mamba={"d_sate": 4})


def test_module_names_are_mamba_ssm_names():
    model = tiny(d_intermediate=24, rms_norm=False, tie_embeddings=False)
    keys = set(model.state_dict())
    layer = "backbone.layers.1."
    expected_layer = {
        f"{layer}norm.weight",
        f"{layer}norm.bias",
        f"{layer}norm2.weight",
        f"{layer}norm2.bias",
        f"{layer}mlp.fc1.weight",
        f"{layer}mlp.fc2.weight",
        *(f"{layer}mixer.{k}" for k in ("A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias")),
        *(f"{layer}mixer.{k}" for k in ("x_proj.weight", "dt_proj.weight", "dt_proj.bias", "out_proj.weight")),
    }
    assert {k for k in keys if k.startswith(layer)} == expected_layer
    assert {k for k in keys if not k.startswith("backbone.layers.")} == {
        "backbone.embedding.weight",
        "backbone.norm_f.weight",
        "backbone.norm_f.bias",
        "lm_head.weight",
    }
    assert model.state_dict()[f"{layer}mlp.fc1.weight"].shape == (2 * 128, 16)  # value and gate, 24 -> 128 wide
    assert model.state_dict()[f"{layer}mlp.fc2.weight"].shape == (16, 128)
    assert model.backbone.embedding.weight.shape == (40, 16)  # 37 padded to a multiple of 8


def test_tied_and_untied_heads_and_init():
    tied = tiny()
    assert tied.lm_head.weight is tied.backbone.embedding.weight
    assert tiny(tie_embeddings=False).lm_head.weight is not tiny(tie_embeddings=False).backbone.embedding.weight
    model = tiny(n_layer=4)
    mixer = model.backbone.layers[0].mixer
    bound = 1 / math.sqrt(mixer.d_inner) / math.sqrt(4)  # kaiming_uniform(a=sqrt(5)) bound, rescaled by n_layer
    assert mixer.out_proj.weight.abs().max() <= bound
    assert mixer.dt_proj.bias.abs().min() > 0  # kept by _no_reinit, not zeroed
    assert torch.equal(mixer.A_log[0], torch.log(torch.arange(1, 9, dtype=torch.float32)))


@pytest.mark.parametrize("mixer", PATTERNS, ids=PATTERN_IDS)
def test_forward_shape_and_gradients(mixer):
    model = tiny(mixer, d_intermediate=24).train()
    ids = torch.randint(0, 37, (2, 13))
    logits = model(ids)
    assert logits.shape == (2, 13, 40)
    torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model(ids, num_last_tokens=3).shape == (2, 3, 40)


@pytest.mark.parametrize("mixer", PATTERNS, ids=PATTERN_IDS)
def test_step_loop_and_prefill_equal_forward(mixer):
    model = tiny(mixer, d_intermediate=24)
    ids = torch.randint(0, 37, (3, 17))
    with torch.no_grad():
        expected = model(ids)
        states = model.init_states(3)
        steps = torch.stack([model.step(t, states) for t in ids.unbind(1)], dim=1)
        states = model.init_states(3)
        prefill = model(ids[:, :10], states)
        rest = torch.stack([model.step(t, states) for t in ids[:, 10:].unbind(1)], dim=1)
    torch.testing.assert_close(steps, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([prefill, rest], dim=1), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mixer", PATTERNS, ids=PATTERN_IDS)
def test_generate_with_caches_equals_uncached_greedy(mixer):
    model = tiny(mixer)
    ids = torch.randint(0, 37, (2, 9))
    with torch.no_grad():
        expected = greedy_without_cache(model, ids, 7)
    calls = []
    model.backbone.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    got = model.generate(ids, max_new_tokens=7)
    assert torch.equal(got, expected)
    assert calls == [(2, 9)]  # one prefill; every new token goes through step, the prefix is never recomputed


def test_generate_stops_at_eos_and_pads_finished_rows():
    model = tiny()
    ids = torch.randint(0, 37, (2, 5))
    free = model.generate(ids, max_new_tokens=6)
    eos = int(free[0, 7])  # the third new token of row 0
    got = model.generate(ids, max_new_tokens=6, eos_token_id=eos)
    first_eos = [int((row[5:] == eos).nonzero()[0]) if (row[5:] == eos).any() else None for row in free]
    for row, stop in enumerate(first_eos):
        n = got.shape[1] - 5
        if stop is None:
            assert torch.equal(got[row], free[row, : 5 + n])
        else:
            assert torch.equal(got[row, : 5 + stop + 1], free[row, : 5 + stop + 1])
            assert (got[row, 5 + stop :] == eos).all()
    if all(stop is not None for stop in first_eos):
        assert got.shape[1] == 5 + max(first_eos) + 1  # stopped early
    assert got.shape[1] <= 11


def test_sampling_is_seeded_and_respects_top_k_and_top_p():
    model = tiny()
    ids = torch.randint(0, 37, (2, 4))
    a = model.generate(ids, max_new_tokens=8, do_sample=True, seed=3)
    b = model.generate(ids, max_new_tokens=8, do_sample=True, seed=3)
    assert torch.equal(a, b)
    assert (a < 37).all()
    assert torch.equal(
        model.generate(ids, max_new_tokens=5, do_sample=True, top_k=1, seed=1), model.generate(ids, max_new_tokens=5)
    )

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]]).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    top2 = sample_next(logits, do_sample=True, top_k=2, generator=g)
    assert set(top2.tolist()) == {0, 1}
    p = torch.softmax(logits[0], -1)  # sorted: 0 (0.55), 1 (0.20), 4 (0.12), ...
    nucleus = sample_next(logits, do_sample=True, top_p=float(p[0] + p[1] / 2), generator=g)
    assert set(nucleus.tolist()) == {0, 1}
    assert set(sample_next(logits, do_sample=True, top_p=0.01, generator=g).tolist()) == {0}
    assert set(sample_next(logits, do_sample=True, generator=g).tolist()) == {0, 1, 2, 3, 4}
    cold = sample_next(logits, do_sample=True, temperature=1e-3, generator=g)
    assert set(cold.tolist()) == {0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"max_new_tokens": 2, "temperature": 0.0}, "temperature"),
        ({"max_new_tokens": 2, "top_k": -1}, "top_k"),
        ({"max_new_tokens": 2, "top_p": 0.0}, "top_p"),
        ({"max_new_tokens": 2, "eos_token_id": 37}, "eos_token_id"),
        ({"max_new_tokens": 2, "seed": 1, "generator": torch.Generator()}, "seed or generator"),
    ],
)
def test_generate_rejects_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        tiny().generate(torch.zeros(1, 3, dtype=torch.long), **kwargs)


def test_generate_rejects_bad_ids():
    model = tiny()
    with pytest.raises(InputError, match=r"\[0, 37\)"):
        model.generate(torch.tensor([[1, 37]]), max_new_tokens=1)
    with pytest.raises(InputError, match="non-empty"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), max_new_tokens=1)
    assert torch.equal(model.generate(torch.tensor([[1, 2]]), max_new_tokens=0), torch.tensor([[1, 2]]))


def test_bfloat16_generate_runs():
    model = tiny(["mamba", "mamba2"]).to(torch.bfloat16)
    ids = torch.randint(0, 37, (2, 6))
    assert model(ids).dtype == torch.bfloat16
    out = model.generate(ids, max_new_tokens=4)
    assert out.shape == (2, 10) and (out < 37).all()


def test_presets():
    assert set(PRESETS) >= {"mamba-130m", "mamba2-130m", "mamba-tiny", "mamba2-tiny", "hybrid-tiny"}
    assert PRESETS["hybrid-tiny"].layer_kinds() == ["mamba", "swa"]
    assert PRESETS["mamba-130m"].padded_vocab_size == 50280
    assert PRESETS["mamba2-130m"].padded_vocab_size == 50288
    model = CausalLM.from_pretrained("mamba2-tiny")
    assert model.config is not PRESETS["mamba2-tiny"]
    assert model(torch.randint(0, 256, (1, 5))).shape == (1, 5, 256)
