"""Caduceus-PS / -Ph: RC equivariance, no padding leak, fused vs unfused add-norm, released sizes (fixture parity
is in test_convert)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import longseq
from longseq.genomics.data.tokenizer import complement_table, pad_batch, reverse_complement
from longseq.genomics.models.caduceus import Caduceus

FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_unfused_add_norm_is_a_different_function():
    model = longseq.from_pretrained(FIXTURES / "caduceus_ps_a")
    unfused = Caduceus(dataclasses.replace(model.config, fused_add_norm=False))
    unfused.load_state_dict(model.state_dict())
    ids = load_file(FIXTURES / "caduceus_ps_a" / "expected.safetensors")["input_ids_L64"]
    with torch.no_grad():
        assert (unfused.eval()(ids) - model(ids)).abs().max() > 0.1


@pytest.mark.parametrize("fused", [True, False])
def test_ps_is_reverse_complement_equivariant(fused):
    model = longseq.from_pretrained("caduceus-ps-test", fused_add_norm=fused)
    ids = torch.randint(7, 12, (2, 33))
    with torch.no_grad():
        logits, logits_rc = model(ids), model(reverse_complement(ids))
        # Predictions for the RC strand, mapped back: flip positions, complement the vocabulary.
        torch.testing.assert_close(logits_rc.flip(1)[..., complement_table()], logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.embed(reverse_complement(ids)).flip(1), model.embed(ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["caduceus-ps-test", "caduceus-ph-test"])
def test_padding_never_leaks(name):
    model = longseq.from_pretrained(name)
    seqs = [torch.randint(7, 12, (n,)) for n in (21, 9, 14)]
    ids, lengths = pad_batch(seqs)
    with torch.no_grad():
        batched = model.embed(ids, lengths)
        for row, seq in enumerate(seqs):
            alone = model.embed(seq[None])[0]
            torch.testing.assert_close(batched[row, : len(seq)], alone, atol=1e-5, rtol=1e-5)


def test_forward_backward_every_parameter_gets_a_gradient():
    model = longseq.from_pretrained("caduceus-ps-test").train()
    ids = torch.randint(7, 12, (2, 24))
    logits = model(ids)
    assert logits.shape == (2, 24, 16)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    mixer = model.layers[0].mixer
    assert mixer.mamba_rev.in_proj.weight is mixer.mamba_fwd.in_proj.weight
    assert mixer.mamba_rev.conv1d.weight is not mixer.mamba_fwd.conv1d.weight


@pytest.mark.parametrize(
    ("name", "params"), [("caduceus-ps-131k", 7.7e6), ("caduceus-ph-1k-d256", 1.9e6), ("caduceus-ps-1k-d118", 4.7e5)]
)
def test_released_sizes_have_the_published_parameter_counts(name, params):
    with torch.device("meta"):
        model = longseq.from_pretrained(name)
    assert float(f"{sum(p.numel() for p in model.parameters()):.2g}") == params


@pytest.mark.parametrize("bias", [False, True])
def test_tied_bimamba_shares_its_projections_like_two_mixers(bias, monkeypatch):
    """The tied BiMamba runs one in_proj and one out_proj for both directions; the same function, outputs and every
    gradient, as the two full mixers (the general path), with padding."""
    from longseq.genomics.models.caduceus import BiMamba, CaduceusConfig

    torch.manual_seed(0)
    mixer = BiMamba(16, CaduceusConfig(d_model=16, n_layer=1, d_state=4, bias=bias))
    if bias:
        with torch.no_grad():
            mixer.mamba_fwd.out_proj.bias.normal_()
    x, lengths = torch.randn(3, 20, 16), torch.tensor([20, 13, 7])
    weight = torch.randn(3, 20, 16)

    def run():
        mixer.zero_grad()
        xg = x.clone().requires_grad_()
        y = mixer(xg, lengths)
        (y * weight).sum().backward()
        return [y.detach(), xg.grad, *(p.grad for p in mixer.parameters())]

    assert mixer._projections_tied()
    shared = run()
    monkeypatch.setattr(BiMamba, "_projections_tied", lambda self: False)
    general = run()
    for got, want in zip(shared, general, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
