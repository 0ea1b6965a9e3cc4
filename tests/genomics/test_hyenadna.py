"""HyenaDNA: presets, forward/backward, layer choice, causality (no padding leak), config checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import longseq
from longseq.genomics.models.hyenadna import PRESETS, HyenaDNA, HyenaDNAConfig


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("hyenadna-tiny-1k", 0.44e6),
        ("hyenadna-tiny-1k-d256", 1.6e6),
        ("hyenadna-small-32k", 3.3e6),
        ("hyenadna-medium-160k", 6.6e6),
        ("hyenadna-large-1m", 6.6e6),
    ],
)
def test_released_sizes_have_the_published_parameter_counts(name, params):
    with torch.device("meta"):  # the original ties the head and keeps pos_emb.z a buffer
        model = HyenaDNA(dataclasses.replace(PRESETS[name], tie_word_embeddings=True))
    assert float(f"{sum(p.numel() for p in model.parameters()):.2g}") == params  # published to two digits
    assert model.layers[0].mixer.filter_fn.pos_emb.z.shape == (1, PRESETS[name].max_seq_len, 5)


def test_forward_backward_every_parameter_gets_a_gradient():
    model = longseq.from_pretrained("hyenadna-test").train()
    ids = torch.randint(7, 12, (2, 40))
    logits = model(ids)
    assert logits.shape == (2, 40, 16)
    torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_layer_choice():
    model = longseq.from_pretrained("hyenadna-test")
    ids = torch.randint(7, 12, (1, 20))
    assert torch.equal(model.hidden_states(ids, layer=0), model.embedding(ids))
    torch.testing.assert_close(model.hidden_states(ids, layer=2), model.hidden_states(ids))
    assert not torch.allclose(model.hidden_states(ids, layer=1), model.hidden_states(ids, layer=2))
    with pytest.raises(ValueError, match="layer must be in -1 .. 2"):
        model.hidden_states(ids, layer=3)


def test_right_padding_never_reaches_real_positions():
    model = longseq.from_pretrained("hyenadna-test")
    ids = torch.randint(7, 12, (1, 30))
    padded = torch.cat([ids, torch.full((1, 9), 4)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model.embed(padded)[:, :30], model.embed(ids), atol=1e-6, rtol=1e-6)


def test_config_validation():
    with pytest.raises(ValueError, match="beyond_l_max"):
        HyenaDNAConfig(beyond_l_max="wrap")
    with pytest.raises(ValueError, match="max_seq_len"):
        HyenaDNAConfig(max_seq_len=1)
    assert HyenaDNAConfig(d_model=8).d_inner == 32
