"""Safe checkpoint loading and our format: corrupt, unsafe, foreign and missing files get one-line errors."""

import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longseq.core import checkpoint
from longseq.core.checkpoint import (
    CheckpointError,
    check_state_dict,
    load_pickle,
    load_tensors,
    read_config,
)
from longseq.core.lm import CausalLM, LMConfig, Mamba2Options

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message, message
    return message


def tiny_lm(**overrides) -> CausalLM:
    config = LMConfig(
        vocab_size=37,
        d_model=16,
        n_layer=2,
        mixer=["mamba", "mamba2"],
        mamba2=Mamba2Options(d_state=8, headdim=8, chunk_size=8),
        **overrides,
    )
    return CausalLM(config).eval()


# Our format


@pytest.mark.parametrize("tie", [True, False])
def test_round_trip_gives_identical_logits_and_stores_tied_weights_once(tmp_path, tie):
    model = tiny_lm(tie_embeddings=tie, d_intermediate=8)
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    stored = load_file(tmp_path / "ckpt" / "model.safetensors")
    heads = {"lm_head.weight", "backbone.embedding.weight"} & set(stored)
    assert len(heads) == (1 if tie else 2)
    assert read_config(tmp_path / "ckpt")["model_type"] == "causal_lm"
    loaded = CausalLM.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config and not loaded.training
    assert (loaded.lm_head.weight is loaded.backbone.embedding.weight) == tie
    ids = torch.randint(0, 37, (2, 10))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
    assert torch.equal(loaded.generate(ids, max_new_tokens=4), model.generate(ids, max_new_tokens=4))


def test_saving_twice_overwrites_and_a_failed_save_leaves_nothing_half_written(tmp_path, monkeypatch):
    model = tiny_lm()
    model.save_pretrained(tmp_path / "ckpt")
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]

    def explode(module, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_model", explode)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "fresh")
    assert list((tmp_path / "fresh").iterdir()) == []


def test_our_format_bad_directories(tmp_path):
    with pytest.raises(CheckpointError) as err:
        CausalLM.from_pretrained(tmp_path)
    assert "no config.json" in one_line(err)

    tiny_lm().save_pretrained(tmp_path / "a")
    values = json.loads((tmp_path / "a" / "config.json").read_text())
    (tmp_path / "a" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as err:
        CausalLM.from_pretrained(tmp_path / "a")
    assert "checkpoint file not found" in one_line(err) and "model.safetensors" in str(err.value)

    (tmp_path / "a" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError) as err:
        CausalLM.from_pretrained(tmp_path / "a")
    assert "not valid JSON" in one_line(err)

    (tmp_path / "a" / "config.json").write_text(json.dumps({**values, "model_type": "lstm_lm"}))
    with pytest.raises(CheckpointError) as err:
        CausalLM.from_pretrained(tmp_path / "a")
    assert "'lstm_lm' model_type that no longseq family reads" in one_line(err)

    (tmp_path / "a" / "config.json").write_text(json.dumps({**values, "flux_capacitor": 1}))
    with pytest.raises(CheckpointError) as err:
        CausalLM.from_pretrained(tmp_path / "a")
    assert "flux_capacitor" in one_line(err)

    (tmp_path / "a" / "config.json").write_text(json.dumps({**values, "mixer": "lstm"}))
    with pytest.raises(CheckpointError) as err:
        CausalLM.from_pretrained(tmp_path / "a")
    assert "invalid LMConfig" in one_line(err) and "lstm" in str(err.value)


def test_weights_for_another_size_are_named(tmp_path):
    tiny_lm().save_pretrained(tmp_path / "a")
    path = tmp_path / "a" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "d_model": 24}))
    with pytest.raises(CheckpointError) as err:
        CausalLM.from_pretrained(tmp_path / "a")
    assert "shape mismatch (file vs model) backbone.embedding.weight (40, 16) vs (40, 24)" in one_line(err)


def test_check_state_dict_names_missing_unexpected_and_misshaped_keys():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    state = {"0.weight": torch.zeros(3, 2), "1.weight": torch.zeros(2, 3), "2.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError) as err:
        check_state_dict(model, state, "x.bin")
    message = one_line(err)
    assert "missing 0.bias, 1.bias" in message
    assert "unexpected 2.weight" in message
    assert "1.weight (2, 3) vs (1, 3)" in message


# Corrupt files


def test_truncated_safetensors(tmp_path):
    tiny_lm().save_pretrained(tmp_path / "a")
    weights = tmp_path / "a" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as err:
        CausalLM.from_pretrained(tmp_path / "a")
    assert "cannot read" in one_line(err) and "safetensors" in str(err.value)


def test_truncated_and_garbage_pickles(tmp_path):
    full = tmp_path / "full.bin"
    torch.save({"w": torch.randn(64, 64)}, full)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        load_tensors(cut)
    assert "cannot read" in one_line(err) and "truncated" in str(err.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a pickle at all")
    with pytest.raises(CheckpointError) as err:
        load_pickle(garbage)
    assert "cannot read" in one_line(err)
    with pytest.raises(CheckpointError) as err:
        load_tensors(tmp_path / "absent.bin")
    assert "not found" in one_line(err)


def test_load_tensors_wants_a_flat_state_dict(tmp_path):
    path = tmp_path / "nested.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, path)
    with pytest.raises(CheckpointError) as err:
        load_tensors(path)
    assert "flat state dict" in one_line(err)
    assert load_pickle(path)["epoch"] == 3


# Pickles that carry code


class Payload:
    """Unpickling this would run a shell command (pickling it only records the call)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_a_pickle_that_would_run_os_system_is_refused_without_running(tmp_path, zipped):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "payload": Payload(marker)}, evil, _use_new_zipfile_serialization=zipped)
    assert evil.is_file() and not marker.exists()
    with pytest.raises(CheckpointError) as err:
        load_pickle(evil)
    assert f"{os.system.__module__}.system" in one_line(err) and "refusing" in str(err.value)
    with pytest.raises(CheckpointError):
        load_tensors(evil)
    assert not marker.exists()


def test_a_pickle_naming_an_arbitrary_class_is_refused(tmp_path, monkeypatch):
    fake = types.ModuleType("some_plugin")

    class Hook:
        pass

    Hook.__module__, Hook.__qualname__ = "some_plugin", "Hook"
    fake.Hook = Hook
    monkeypatch.setitem(sys.modules, "some_plugin", fake)
    torch.save({"hook": Hook()}, tmp_path / "x.pt")
    monkeypatch.delitem(sys.modules, "some_plugin")
    with pytest.raises(CheckpointError) as err:
        load_pickle(tmp_path / "x.pt")
    assert "some_plugin.Hook" in one_line(err) and "refusing" in str(err.value)


# Lightning checkpoints with OmegaConf hyper-parameters


def test_the_hyenadna_lightning_checkpoint_reads_without_omegaconf():
    before = set(sys.modules)
    ckpt = load_pickle(FIXTURES / "hyenadna_a" / "weights.ckpt")
    assert not any(name.startswith(("omegaconf", "pytorch_lightning")) for name in set(sys.modules) - before)
    assert all(isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values())
    assert any(k.startswith("model.backbone.") for k in ckpt["state_dict"])
    hparams = ckpt["hyper_parameters"]
    assert type(hparams).__module__ == "omegaconf.dictconfig" and type(hparams).__name__ == "DictConfig"
    assert set(hparams._state["_content"]) >= {"model"}  # the data is there, as inert attributes


class DictConfig:
    """Pickles like omegaconf's DictConfig (module name and state layout), so omegaconf is not needed here."""

    def __init__(self, content):
        self.__dict__["_content"] = content

    def __getstate__(self):
        return {"_content": self._content, "_parent": None}


def test_a_small_lightning_checkpoint_with_omegaconf_objects(tmp_path, monkeypatch):
    module = types.ModuleType("omegaconf.dictconfig")
    module.DictConfig = DictConfig
    monkeypatch.setattr(DictConfig, "__module__", "omegaconf.dictconfig")
    monkeypatch.setitem(sys.modules, "omegaconf", types.ModuleType("omegaconf"))
    monkeypatch.setitem(sys.modules, "omegaconf.dictconfig", module)
    hparams = DictConfig({"model": DictConfig({"d_model": 8, "n_layer": 2}), "lr": 1e-3})
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"model.w": torch.ones(2, 2)}, "hyper_parameters": hparams, "epoch": 1}, path)
    monkeypatch.undo()
    before = set(sys.modules)
    ckpt = load_pickle(path)
    assert not any(name.startswith("omegaconf") for name in set(sys.modules) - before)
    assert torch.equal(ckpt["state_dict"]["model.w"], torch.ones(2, 2)) and ckpt["epoch"] == 1
    content = ckpt["hyper_parameters"]._state["_content"]
    assert content["lr"] == 1e-3 and content["model"]._state["_content"] == {"d_model": 8, "n_layer": 2}
