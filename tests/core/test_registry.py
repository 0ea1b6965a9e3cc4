"""The registry: every family declared once and consistent with the index, every preset built, run, saved and
reloaded through `longseq.from_pretrained`, one error type for every failure, Hub ids from the cache."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import longseq
from longseq.core.checkpoint import CheckpointError
from longseq.core.lm import CausalLM
from longseq.core.registry import INDEX, family, list_models

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Presets above this many parameters are only built on the meta device (their shapes and configs checked).
CPU_PARAMETERS = 30_000_000


@pytest.mark.parametrize("entry", INDEX, ids=lambda entry: entry.family)
def test_each_family_matches_its_index_entry(entry):
    fam = family(entry)
    assert fam.model_type == entry.model_types[0]
    assert tuple(fam.presets) == entry.presets
    assert fam.example is not None, f"{entry.family} declares no example input"
    for config in fam.presets.values():
        assert isinstance(config, fam.config_class)


def test_preset_names_are_unique_and_listed():
    names = list_models()
    assert len(names) == len(set(names))
    assert list_models("mamba-*") == [n for n in names if n.startswith("mamba-")]
    assert "hyenadna-tiny-1k" in longseq.list_models()


def _tensors(output) -> list[torch.Tensor]:
    """Every tensor in a (nested) model output: tensors, tuples, lists, dicts, dataclasses."""
    if isinstance(output, torch.Tensor):
        return [output]
    if dataclasses.is_dataclass(output):
        output = [getattr(output, f.name) for f in dataclasses.fields(output)]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


def _family_of(name: str):
    return family(next(entry for entry in INDEX if name in entry.presets))


@pytest.mark.parametrize("name", list_models())
def test_every_preset_builds_runs_saves_and_reloads(name, tmp_path):
    fam = _family_of(name)
    with torch.device("meta"):
        meta = longseq.from_pretrained(name)
    assert type(meta) is fam.model_class and not meta.training
    if sum(p.numel() for p in meta.parameters()) > CPU_PARAMETERS:
        return  # the released sizes: the config and every shape were built above
    model = longseq.from_pretrained(name)
    torch.manual_seed(0)
    inputs = fam.example(model)
    with torch.no_grad():
        expected = _tensors(model(*inputs))
    assert expected and all(t.isfinite().all() for t in expected if t.is_floating_point())
    model.save_pretrained(tmp_path / "saved")
    again = longseq.from_pretrained(tmp_path / "saved")
    assert type(again) is type(model) and not again.training
    assert again.config == model.config
    torch.manual_seed(0)
    with torch.no_grad():
        got = _tensors(again(*inputs))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_overrides_replace_preset_fields_and_unknown_ones_are_refused():
    model = longseq.from_pretrained("mamba-tiny", n_layer=1)
    assert len(model.backbone.layers) == 1
    with pytest.raises(CheckpointError, match="LMConfig has no field warp"):
        longseq.from_pretrained("mamba-tiny", warp=1)
    with pytest.raises(CheckpointError, match="invalid LMConfig"):
        longseq.from_pretrained("mamba-tiny", n_layer=0)


def test_unknown_names_and_other_families_are_one_line_checkpoint_errors(tmp_path):
    for bad in ("no-such-model", tmp_path / "missing", "org/not-cached-anywhere"):
        with pytest.raises(CheckpointError) as err:
            longseq.from_pretrained(bad)
        assert "\n" not in str(err.value)
    longseq.from_pretrained("hyenadna-test").save_pretrained(tmp_path / "dna")
    with pytest.raises(CheckpointError, match="holds a HyenaDNA, not a CausalLM"):
        CausalLM.from_pretrained(tmp_path / "dna")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        longseq.from_pretrained(tmp_path / "empty")


def _cache_hub_repo(cache: Path, repo_id: str, files: Path) -> None:
    """Lay ``files`` out as huggingface_hub's cache holds a downloaded model repository."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(files, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_a_hub_id_loads_from_the_cache_offline(tmp_path):
    """As a user would: HF_HUB_OFFLINE=1 and a cache that holds the repository (huggingface_hub reads both
    when it is imported, hence a fresh interpreter)."""
    _cache_hub_repo(tmp_path / "hub", "state-spaces/mamba-test", FIXTURES / "mamba_a" / "hf")
    code = (
        "import longseq; m = longseq.from_pretrained('state-spaces/mamba-test'); print(type(m).__name__, m.training)\n"
        "try:\n    longseq.from_pretrained('state-spaces/another-model')\n"
        "except longseq.core.CheckpointError as err:\n    print(err)"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    loaded, refused = run.stdout.splitlines()
    assert loaded == "CausalLM False"
    assert "state-spaces/another-model is not in the Hugging Face cache" in refused


def test_our_format_records_its_model_type(tmp_path):
    longseq.from_pretrained("mamba-tiny").save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "causal_lm"


def test_loading_a_name_imports_only_its_family(tmp_path):
    code = (
        "import sys, longseq; longseq.from_pretrained('hyenadna-test'); "
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('longseq.')}), 'timm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['core', 'genomics', 'kernels'] False"
