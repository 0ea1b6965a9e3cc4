"""Caduceus-PS / -Ph: fixture parity (HF layout), RC equivariance, no padding leak, fused vs unfused add-norm."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longseq.core.checkpoint import CheckpointError
from longseq.core.registry import from_pretrained
from longseq.genomics.data.tokenizer import complement_table, pad_batch, reverse_complement
from longseq.genomics.models import PRESETS, build, model_class
from longseq.genomics.models.caduceus import Caduceus

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.mark.parametrize("name", ["caduceus_ps_a", "caduceus_ph_a"])
def test_hf_directory_reproduces_the_fixture(name):
    model = from_pretrained(FIXTURES / name)
    expected = load_file(FIXTURES / name / "expected.safetensors")
    assert isinstance(model, Caduceus) and model.config.rcps == (name == "caduceus_ps_a")
    for l in (64, 37):
        ids = expected[f"input_ids_L{l}"]
        with torch.no_grad():
            torch.testing.assert_close(model.hidden_states(ids), expected[f"hidden_L{l}"], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(model(ids), expected[f"logits_L{l}"], atol=1e-5, rtol=1e-5)


def test_unfused_add_norm_is_a_different_function():
    model = from_pretrained(FIXTURES / "caduceus_ps_a")
    unfused = Caduceus(dataclasses.replace(model.config, fused_add_norm=False))
    unfused.load_state_dict(model.state_dict())
    ids = load_file(FIXTURES / "caduceus_ps_a" / "expected.safetensors")["input_ids_L64"]
    with torch.no_grad():
        assert (unfused.eval()(ids) - model(ids)).abs().max() > 0.1


@pytest.mark.parametrize("fused", [True, False])
def test_ps_is_reverse_complement_equivariant(fused):
    model = build("caduceus-ps-test", fused_add_norm=fused).eval()
    ids = torch.randint(7, 12, (2, 33))
    with torch.no_grad():
        logits, logits_rc = model(ids), model(reverse_complement(ids))
        # Predictions for the RC strand, mapped back: flip positions, complement the vocabulary.
        torch.testing.assert_close(logits_rc.flip(1)[..., complement_table()], logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.embed(reverse_complement(ids)).flip(1), model.embed(ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["caduceus-ps-test", "caduceus-ph-test"])
def test_padding_never_leaks(name):
    model = build(name).eval()
    seqs = [torch.randint(7, 12, (n,)) for n in (21, 9, 14)]
    ids, lengths = pad_batch(seqs)
    with torch.no_grad():
        batched = model.embed(ids, lengths)
        for row, seq in enumerate(seqs):
            alone = model.embed(seq[None])[0]
            torch.testing.assert_close(batched[row, : len(seq)], alone, atol=1e-5, rtol=1e-5)


def test_forward_backward_every_parameter_gets_a_gradient():
    model = build("caduceus-ps-test").train()
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
        model = model_class(PRESETS[name])(PRESETS[name])
    assert float(f"{sum(p.numel() for p in model.parameters()):.2g}") == params


def test_round_trip_through_our_format(tmp_path):
    model = from_pretrained(FIXTURES / "caduceus_ps_a")
    model.save_pretrained(tmp_path / "ours")
    again = Caduceus.from_pretrained(tmp_path / "ours")
    ids = torch.randint(7, 12, (2, 19))
    with torch.no_grad():
        torch.testing.assert_close(again(ids), model(ids))


def test_context_length_from_the_released_directory_name(tmp_path):
    directory = tmp_path / "caduceus-ph_seqlen-1k_d_model-118_n_layer-4_lr-8e-3"
    shutil.copytree(FIXTURES / "caduceus_ph_a", directory)
    assert from_pretrained(directory).context_length == 1024
    assert from_pretrained(FIXTURES / "caduceus_ph_a").context_length is None


def test_untied_or_foreign_weights_are_refused(tmp_path):
    directory = tmp_path / "ps"
    shutil.copytree(FIXTURES / "caduceus_ps_a", directory)
    state = load_file(directory / "model.safetensors")
    state["lm_head.lm_head.weight"] = torch.randn(16, 32)
    torch.save(state, directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="lm_head.lm_head.weight differs from"):
        from_pretrained(directory)
    del state["lm_head.lm_head.weight"]
    state["caduceus.backbone.embeddings.word_embeddings.complement_map"] = torch.arange(16)
    torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="complement_map is not the A<->T"):
        from_pretrained(directory)
