"""Official Mamba LM checkpoints through `longseq.from_pretrained`: fixture parity and one-line errors."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import longseq
from longseq.core.checkpoint import CheckpointError
from longseq.core.lm import AttentionOptions, CausalLM, LMConfig, Mamba2Options, MambaOptions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MAMBA_A = FIXTURES / "mamba_a"


@pytest.fixture(scope="module")
def expected():
    return load_file(MAMBA_A / "expected.safetensors")


@pytest.mark.parametrize("layout", ["hf", "state_spaces"])
def test_mamba_a_reproduces_official_logits_and_greedy_continuation(layout, expected):
    model = longseq.from_pretrained(MAMBA_A / layout)
    assert isinstance(model, CausalLM) and not model.training
    assert model.lm_head.weight is model.backbone.embedding.weight
    with torch.no_grad():
        for L in (96, 33):
            logits = model(expected[f"input_ids_L{L}"])
            torch.testing.assert_close(logits, expected[f"logits_L{L}"], rtol=0, atol=1e-5)
    prompt, output = expected["greedy_prompt"], expected["greedy_output"]
    assert torch.equal(model.generate(prompt, max_new_tokens=output.shape[1] - prompt.shape[1]), output)


def test_both_layouts_give_the_same_model():
    hf = longseq.from_pretrained(MAMBA_A / "hf")
    ss = longseq.from_pretrained(MAMBA_A / "state_spaces")
    assert hf.config.mamba == MambaOptions(d_state=16, d_conv=4, expand=2, dt_rank=4)  # transformers stores it
    assert ss.config.mamba == MambaOptions()  # mamba_ssm's "auto" = ceil(64 / 16)
    assert replace(hf.config, mamba=ss.config.mamba) == ss.config
    for (name, a), b in zip(hf.state_dict().items(), ss.state_dict().values()):
        assert torch.equal(a, b), name


def export_state_spaces(model: CausalLM, directory: Path, config: dict) -> Path:
    """Write our model in the state-spaces layout (pytorch_model.bin with every key, tied head included)."""
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state, directory / "pytorch_model.bin")
    return directory


def test_state_spaces_mamba2_hybrid_with_mlp_maps_every_option(tmp_path):
    """ssm_cfg (Mamba2), attn_layer_idx / attn_cfg, d_intermediate and an untied head map to our config."""
    ours = LMConfig(
        vocab_size=37,
        d_model=16,
        n_layer=3,
        mixer=["mamba2", "attention", "mamba2"],
        d_intermediate=24,
        pad_vocab_size_multiple=4,
        tie_embeddings=False,
        mamba2=Mamba2Options(d_state=8, headdim=8, ngroups=2, chunk_size=16),
        attention=AttentionOptions(num_heads=4, num_heads_kv=2, qkv_proj_bias=False, rotary_emb_dim=4),
    )
    model = CausalLM(ours).eval()
    official = {
        "d_model": 16,
        "d_intermediate": 24,
        "n_layer": 3,
        "vocab_size": 37,
        "ssm_cfg": {"layer": "Mamba2", "d_state": 8, "headdim": 8, "ngroups": 2, "chunk_size": 16, "dt_min": 0.01},
        "attn_layer_idx": [1],
        "attn_cfg": {"causal": True, "num_heads": 4, "num_heads_kv": 2, "qkv_proj_bias": False, "rotary_emb_dim": 4},
        "rms_norm": True,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "pad_vocab_size_multiple": 4,
        "tie_embeddings": False,
    }
    loaded = longseq.from_pretrained(export_state_spaces(model, tmp_path / "ss", official))
    assert loaded.config.layer_kinds() == ["mamba2", "attention", "mamba2"]
    assert loaded.config.mamba2 == ours.mamba2 and loaded.config.attention.num_heads_kv == 2
    ids = torch.randint(0, 37, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)


def copy_fixture(layout: str, tmp_path: Path) -> Path:
    target = tmp_path / layout
    shutil.copytree(MAMBA_A / layout, target)
    return target


def edit_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


def test_wrong_architecture_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="holds a HyenaDNA, not a CausalLM"):
        CausalLM.from_pretrained(FIXTURES / "hyenadna_a")
    bigger = copy_fixture("hf", tmp_path)
    edit_config(bigger, hidden_size=32, intermediate_size=64)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*\(101, 64\) vs \(101, 32\)"):
        longseq.from_pretrained(bigger)
    deeper = copy_fixture("state_spaces", tmp_path)
    edit_config(deeper, n_layer=3)
    with pytest.raises(CheckpointError, match="missing backbone.layers.2.mixer"):
        longseq.from_pretrained(deeper)
    mamba2 = copy_fixture("state_spaces", tmp_path / "m2")
    edit_config(mamba2, ssm_cfg={"layer": "Mamba2", "d_state": 16, "headdim": 32})
    with pytest.raises(CheckpointError, match="missing .*dt_bias.*unexpected .*dt_proj"):
        longseq.from_pretrained(mamba2)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    directory = copy_fixture("hf", tmp_path)
    tensors = load_file(directory / "model.safetensors")
    del tensors["backbone.layers.1.mixer.D"]
    tensors["backbone.layers.1.mixer.D_extra"] = torch.zeros(3)
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        longseq.from_pretrained(directory)
    message = str(err.value)
    assert "\n" not in message
    assert "missing backbone.layers.1.mixer.D" in message and "unexpected backbone.layers.1.mixer.D_extra" in message


def test_a_tied_head_that_differs_from_the_embedding_is_refused(tmp_path):
    directory = copy_fixture("hf", tmp_path)
    tensors = load_file(directory / "model.safetensors")
    tensors["lm_head.weight"] = tensors["backbone.embeddings.weight"] + 1
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(CheckpointError, match="lm_head.weight differs from backbone.embedding.weight"):
        longseq.from_pretrained(directory)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"ssm_cfg": {"d_state": 16, "warp_drive": 1}}, "ssm_cfg has options this loader does not know: warp_drive"),
        ({"ssm_cfg": {"layer": "Mamba3"}}, "Mamba3"),
        ({"ssm_cfg": {"layer": "Mamba2", "rmsnorm": False}}, "ssm_cfg.rmsnorm = False is not supported"),
        ({"attn_layer_idx": [5]}, r"attn_layer_idx \[5\]"),
        ({"attn_layer_idx": [0], "attn_cfg": {"num_heads": 4, "mlp_dim": 64}}, "attn_cfg.mlp_dim = 64"),
        ({"d_model": "wide"}, "invalid config"),
        ({"novel_field": 1}, "config has options this loader does not know: novel_field"),
    ],
)
def test_unsupported_state_spaces_options_are_refused(tmp_path, changes, match):
    directory = copy_fixture("state_spaces", tmp_path)
    edit_config(directory, **changes)
    with pytest.raises(CheckpointError, match=match):
        longseq.from_pretrained(directory)


def test_unsupported_hf_configs_are_refused(tmp_path):
    directory = copy_fixture("hf", tmp_path)
    edit_config(directory, hidden_act="gelu")
    with pytest.raises(CheckpointError, match="hidden_act 'gelu'"):
        longseq.from_pretrained(directory)
    edit_config(directory, hidden_act="silu", model_type="mamba2")
    with pytest.raises(CheckpointError, match="'mamba2' model_type that no longseq family reads"):
        longseq.from_pretrained(directory)
    edit_config(directory, model_type="mamba")
    values = json.loads((directory / "config.json").read_text())
    del values["num_hidden_layers"]
    (directory / "config.json").write_text(json.dumps(values))
    with pytest.raises(CheckpointError, match="config.json lacks num_hidden_layers"):
        longseq.from_pretrained(directory)


def test_missing_files_and_paths(tmp_path):
    with pytest.raises(CheckpointError, match="unknown model .*: not a preset"):
        longseq.from_pretrained(tmp_path / "nowhere")
    directory = copy_fixture("state_spaces", tmp_path)
    (directory / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="no weights in .*model.safetensors or pytorch_model.bin"):
        longseq.from_pretrained(directory)
    (directory / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        longseq.from_pretrained(directory)


def test_sharded_safetensors(tmp_path):
    directory = copy_fixture("hf", tmp_path)
    tensors = load_file(directory / "model.safetensors")
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, directory / shard)
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (directory / "model.safetensors").unlink()
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    reference = longseq.from_pretrained(MAMBA_A / "hf")
    sharded = longseq.from_pretrained(directory)
    for (name, a), b in zip(reference.state_dict().items(), sharded.state_dict().values()):
        assert torch.equal(a, b), name
    (directory / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        longseq.from_pretrained(directory)


def test_presets_and_our_format_through_longseq_from_pretrained(tmp_path):
    assert longseq.from_pretrained("mamba-tiny").config.d_model == 64
    model = longseq.from_pretrained(MAMBA_A / "state_spaces")
    model.save_pretrained(tmp_path / "ours")
    again = longseq.from_pretrained(tmp_path / "ours")
    ids = torch.randint(0, 101, (1, 9))
    with torch.no_grad():
        assert torch.equal(again(ids), model(ids))


def test_mamba2_a_hybrid_reproduces_official_logits_and_greedy_continuation():
    """Mamba2 (2 groups) + GQA attention + gated MLPs, from mamba_ssm's own save_pretrained (tests/fixtures)."""
    directory = FIXTURES / "mamba2_a"
    expected = load_file(directory / "expected.safetensors")
    model = longseq.from_pretrained(directory / "state_spaces")
    assert model.config.layer_kinds() == ["mamba2", "attention", "mamba2"]
    assert model.config.mlp_width == 128
    with torch.no_grad():
        for L in (80, 33):
            logits = model(expected[f"input_ids_L{L}"])
            torch.testing.assert_close(logits, expected[f"logits_L{L}"], rtol=0, atol=1e-5)
    prompt, output = expected["greedy_prompt"], expected["greedy_output"]
    assert torch.equal(model.generate(prompt, max_new_tokens=output.shape[1] - prompt.shape[1]), output)
