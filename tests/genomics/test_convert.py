"""Official HyenaDNA and Caduceus checkpoints through `longseq.from_pretrained`: every fixture reproduces the
official outputs in eval mode; layouts, overrides, tied aliases and refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import longseq
from longseq.core.checkpoint import CheckpointError, load_pickle
from longseq.core.lm import CausalLM
from longseq.genomics.models.caduceus import Caduceus
from longseq.genomics.models.hyenadna import HyenaDNA

FIXTURES = Path(__file__).parents[1] / "fixtures"
HYENADNA = FIXTURES / "hyenadna_a"


def expected(fixture: str) -> dict[str, torch.Tensor]:
    """input_ids_L{l}, hidden_L{l}, logits_L{l} (and tied_logits_L{l} for HyenaDNA's original checkpoint)."""
    tensors = load_file(FIXTURES / fixture / "expected.safetensors")
    tied = FIXTURES / fixture / "expected_tied.safetensors"
    return {**tensors, **(load_file(tied) if tied.is_file() else {})}


def assert_reproduces(model, fixture: str, logits: str = "logits") -> None:
    values = expected(fixture)
    for length in sorted({int(key.rsplit("_L", 1)[1]) for key in values}):
        ids = values[f"input_ids_L{length}"]
        with torch.no_grad():
            torch.testing.assert_close(model.hidden_states(ids), values[f"hidden_L{length}"], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(model(ids), values[f"{logits}_L{length}"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("path", "overrides", "model_class", "logits"),
    [
        ("hyenadna_a", {}, HyenaDNA, "logits"),  # the HF layout
        ("hyenadna_a", {"filter_shift": 0.05}, HyenaDNA, "logits"),  # the released shift, spelled out
        ("hyenadna_a/weights.ckpt", {}, HyenaDNA, "tied_logits"),  # the original Lightning checkpoint alone
        ("caduceus_ps_a", {}, Caduceus, "logits"),
        ("caduceus_ph_a", {"max_seq_len": 1024}, Caduceus, "logits"),
    ],
)
def test_every_fixture_loads_in_eval_mode_and_reproduces_the_official_outputs(path, overrides, model_class, logits):
    model = longseq.from_pretrained(FIXTURES / path, **overrides)
    assert type(model) is model_class
    assert not any(module.training for module in model.modules())
    for name, value in overrides.items():
        assert getattr(model.config, name) == value
    assert_reproduces(model, path.split("/")[0], logits)


def test_the_filter_shift_override_changes_the_function():
    model = longseq.from_pretrained(HYENADNA, filter_shift=0.0)
    with pytest.raises(AssertionError):
        assert_reproduces(model, "hyenadna_a")


def original_dir(tmp_path: Path) -> Path:
    """The original release's directory: its nested config.json beside weights.ckpt."""
    directory = tmp_path / "original"
    directory.mkdir()
    shutil.copy(HYENADNA / "original_config.json", directory / "config.json")
    shutil.copy(HYENADNA / "weights.ckpt", directory / "weights.ckpt")
    return directory


def test_hyenadna_layouts(tmp_path):
    """The original directory (tied head), gradient-checkpointed keys, and HF weights as pytorch_model.bin."""
    model = longseq.from_pretrained(original_dir(tmp_path))
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.embedding.weight
    assert_reproduces(model, "hyenadna_a", "tied_logits")

    checkpoint = load_pickle(tmp_path / "original" / "weights.ckpt")
    state = {
        k.replace(".mixer.", ".mixer.layer.").replace(".mlp.", ".mlp.layer."): v
        for k, v in checkpoint["state_dict"].items()
    }
    torch.save({"state_dict": state}, tmp_path / "original" / "weights.ckpt")
    assert_reproduces(longseq.from_pretrained(tmp_path / "original"), "hyenadna_a", "tied_logits")

    (tmp_path / "bin").mkdir()
    shutil.copy(HYENADNA / "config.json", tmp_path / "bin" / "config.json")
    torch.save(load_file(HYENADNA / "model.safetensors"), tmp_path / "bin" / "pytorch_model.bin")
    assert_reproduces(longseq.from_pretrained(tmp_path / "bin"), "hyenadna_a")


@pytest.mark.parametrize("fixture", ["hyenadna_a", "caduceus_ps_a"])
def test_round_trip_through_our_format(fixture, tmp_path):
    model = longseq.from_pretrained(FIXTURES / fixture)
    model.save_pretrained(tmp_path / "ours")
    again = type(model).from_pretrained(tmp_path / "ours")
    assert again.config == model.config and not again.training
    assert_reproduces(again, fixture)


def test_unmapped_and_missing_keys_are_named(tmp_path):
    directory = tmp_path / "hf"
    shutil.copytree(HYENADNA, directory)
    state = load_file(HYENADNA / "model.safetensors")
    state["hyena.backbone.layers.0.mixer.extra.weight"] = torch.zeros(1)
    torch.save(state, directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"keys no rule maps: hyena\.backbone\.layers\.0\.mixer\.extra\.weight"):
        longseq.from_pretrained(directory)
    del state["hyena.backbone.layers.0.mixer.extra.weight"]
    del state["hyena.backbone.layers.1.mlp.fc2.bias"]
    torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"missing layers\.1\.mlp\.fc2\.bias"):
        longseq.from_pretrained(directory)


def test_tied_copies_that_differ_are_refused(tmp_path):
    directory = original_dir(tmp_path)
    checkpoint = load_pickle(directory / "weights.ckpt")
    checkpoint["state_dict"]["model.backbone.layers.0.mixer.filter_fn.implicit_filter.3.freq"] += 1
    torch.save({"state_dict": checkpoint["state_dict"]}, directory / "weights.ckpt")
    with pytest.raises(CheckpointError, match=r"implicit_filter\.3\.freq differs from .*implicit_filter\.1\.freq"):
        longseq.from_pretrained(directory)

    directory = tmp_path / "ps"
    shutil.copytree(FIXTURES / "caduceus_ps_a", directory)
    state = load_file(directory / "model.safetensors")
    state["lm_head.lm_head.weight"] = torch.randn(16, 32)
    torch.save(state, directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="the LM head differs from the embedding"):
        longseq.from_pretrained(directory)
    del state["lm_head.lm_head.weight"]
    state["caduceus.backbone.embeddings.word_embeddings.complement_map"] = torch.arange(16)
    torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="complement_map is not the A<->T"):
        longseq.from_pretrained(directory)


def test_other_families_unknown_overrides_and_bad_configs_are_one_line_errors(tmp_path):
    longseq.from_pretrained("mamba-tiny").save_pretrained(tmp_path / "lm")
    with pytest.raises(CheckpointError, match="holds a CausalLM, not a HyenaDNA"):
        HyenaDNA.from_pretrained(tmp_path / "lm")
    with pytest.raises(CheckpointError, match="holds a HyenaDNA, not a CausalLM"):
        CausalLM.from_pretrained(HYENADNA)
    with pytest.raises(CheckpointError, match=r"\(caduceus-hf\) takes no setting filter_shift"):
        longseq.from_pretrained(FIXTURES / "caduceus_ps_a", filter_shift=0.0)
    with pytest.raises(CheckpointError, match="unknown model 'hyenadna-nope'"):
        longseq.from_pretrained("hyenadna-nope")
    (tmp_path / "mha").mkdir()
    config = json.loads((HYENADNA / "original_config.json").read_text())
    config["layer"]["_name_"] = "mha"
    (tmp_path / "mha" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'mha' is not a Hyena layer") as err:
        longseq.from_pretrained(tmp_path / "mha")
    assert "\n" not in str(err.value)


def test_caduceus_context_length_from_the_released_name_or_an_override(tmp_path):
    directory = tmp_path / "caduceus-ph_seqlen-1k_d_model-118_n_layer-4_lr-8e-3"
    shutil.copytree(FIXTURES / "caduceus_ph_a", directory)
    assert longseq.from_pretrained(directory).context_length == 1024
    snapshot = tmp_path / "models--kuleshov-group--caduceus-ph_seqlen-131k_d_model-256" / "snapshots" / "0123abc"
    shutil.copytree(FIXTURES / "caduceus_ph_a", snapshot)
    assert longseq.from_pretrained(snapshot).context_length == 131072
    assert longseq.from_pretrained(FIXTURES / "caduceus_ph_a").context_length is None
    assert longseq.from_pretrained(directory, max_seq_len=512).context_length == 512
