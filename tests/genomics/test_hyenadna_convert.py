"""HyenaDNA official checkpoints: the HF and the original Lightning layouts reproduce the fixture outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longseq.core.checkpoint import CheckpointError, load_pickle
from longseq.core.registry import from_pretrained
from longseq.genomics.models.hyenadna import HyenaDNA

FIXTURE = Path(__file__).parents[1] / "fixtures" / "hyenadna_a"
EXPECTED = load_file(FIXTURE / "expected.safetensors")
EXPECTED_TIED = load_file(FIXTURE / "expected_tied.safetensors")


def original_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "original"
    directory.mkdir()
    shutil.copy(FIXTURE / "original_config.json", directory / "config.json")
    shutil.copy(FIXTURE / "weights.ckpt", directory / "weights.ckpt")
    return directory


def assert_reproduces(model: HyenaDNA, logits_key: str, expected: dict) -> None:
    for l in (130, 57):
        ids = EXPECTED[f"input_ids_L{l}"]
        with torch.no_grad():
            hidden = model.hidden_states(ids)
            logits = model(ids)
        torch.testing.assert_close(hidden, EXPECTED[f"hidden_L{l}"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits, expected[f"{logits_key}_L{l}"], atol=1e-5, rtol=1e-5)


def test_hf_directory_reproduces_the_fixture():
    model = from_pretrained(FIXTURE)
    assert isinstance(model, HyenaDNA) and not model.config.tie_word_embeddings
    assert model.config.max_seq_len == 130 and model.config.filter_shift == 0.05
    assert_reproduces(model, "logits", EXPECTED)


def test_hf_pytorch_model_bin_reproduces_the_fixture(tmp_path):
    directory = tmp_path / "bin"
    directory.mkdir()
    shutil.copy(FIXTURE / "config.json", directory / "config.json")
    torch.save(load_file(FIXTURE / "model.safetensors"), directory / "pytorch_model.bin")
    assert_reproduces(from_pretrained(directory), "logits", EXPECTED)


def test_original_lightning_directory_reproduces_the_fixture(tmp_path):
    model = from_pretrained(original_dir(tmp_path))
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight is model.embedding.weight
    assert_reproduces(model, "tied_logits", EXPECTED_TIED)


def test_gradient_checkpointed_layer_keys_load(tmp_path):
    directory = original_dir(tmp_path)
    checkpoint = load_pickle(directory / "weights.ckpt")
    state = {
        k.replace(".mixer.", ".mixer.layer.").replace(".mlp.", ".mlp.layer."): v
        for k, v in checkpoint["state_dict"].items()
    }
    torch.save({"state_dict": state}, directory / "weights.ckpt")
    assert_reproduces(from_pretrained(directory), "tied_logits", EXPECTED_TIED)


def test_round_trip_through_our_format(tmp_path):
    model = from_pretrained(FIXTURE)
    model.save_pretrained(tmp_path / "ours")
    again = HyenaDNA.from_pretrained(tmp_path / "ours")
    assert again.config == model.config
    assert_reproduces(again, "logits", EXPECTED)


def test_unexpected_and_missing_keys_are_named(tmp_path):
    directory = tmp_path / "hf"
    shutil.copytree(FIXTURE, directory)
    state = load_file(FIXTURE / "model.safetensors")
    state["hyena.backbone.layers.0.mixer.extra.weight"] = torch.zeros(1)
    torch.save(state, directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"unexpected keys hyena\.backbone\.layers\.0\.mixer\.extra\.weight"):
        from_pretrained(directory)
    del state["hyena.backbone.layers.0.mixer.extra.weight"]
    del state["hyena.backbone.layers.1.mlp.fc2.bias"]
    torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"missing layers\.1\.mlp\.fc2\.bias"):
        from_pretrained(directory)


def test_other_architectures_and_missing_paths_are_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "mamba", "d_model": 8}')
    with pytest.raises(CheckpointError, match="not a genomics model"):
        from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="neither a checkpoint directory nor a preset"):
        from_pretrained(tmp_path / "nowhere")
    config = (FIXTURE / "original_config.json").read_text().replace('"hyena"', '"mha"')
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(CheckpointError, match="'mha' is not a Hyena layer"):
        from_pretrained(tmp_path)
