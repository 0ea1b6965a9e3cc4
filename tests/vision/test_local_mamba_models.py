import pytest
import timm
import torch

import longseq
import longseq.vision.local_mamba  # noqa: F401  (registers the models with timm)
from longseq.core.checkpoint import CheckpointError
from longseq.core.io import InputError
from longseq.vision.local_mamba.local_vim import LocalVim, LocalVimConfig
from longseq.vision.local_mamba.local_vmamba import LocalVMamba, LocalVMambaConfig
from longseq.vision.local_mamba.presets import PRESETS

TINY = ["localvim_test", "localvim_test_search", "localvmamba_test", "localvmamba_test_search"]


@pytest.mark.parametrize("name", TINY)
def test_every_parameter_gets_a_gradient(name):
    model = timm.create_model(name, drop_path_rate=0.0)
    logits = model(torch.randn(2, 3, 24, 40))  # non-square, 3x5 patches (vim) / 6x10 (vmamba)
    assert logits.shape == (2, 10)
    logits.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("name", ["localvim_test", "localvmamba_test"])
def test_non_square_and_ragged_inputs_work(name):
    model = timm.create_model(name).eval()
    with torch.no_grad():
        for size in [(32, 32), (17, 45), (40, 8)]:
            assert model(torch.randn(1, 3, *size)).shape == (1, 10)


@pytest.mark.parametrize("name", ["localvim_test", "localvmamba_test"])
def test_bad_images_get_clear_errors(name):
    model = timm.create_model(name)
    with pytest.raises(InputError, match="3-channel images; got 1 channels"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(InputError, match="smaller than one"):
        model(torch.randn(1, 3, 2, 32))
    with pytest.raises(InputError, match="expected images"):
        model(torch.randn(3, 32, 32))


def test_timm_classifier_api_localvim():
    model = timm.create_model("localvim_test")
    assert model.get_classifier() is model.head
    x = torch.randn(2, 3, 32, 32)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.head_hidden_size)
    model.reset_classifier(0)
    assert model(x).shape == (2, 32)
    model.reset_classifier(5, "")
    assert model(x).shape == (2, 16, 5)
    names = dict(model.named_parameters())
    cfg = model.pretrained_cfg
    assert cfg["first_conv"] + ".weight" in names
    with pytest.raises(ValueError, match="class token"):
        model.reset_classifier(3, "token")


def test_timm_classifier_api_localvmamba():
    model = timm.create_model("localvmamba_test", num_classes=0, global_pool="")
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 4, 4, 32) and model.output_fmt == "NHWC"
    model.reset_classifier(7, "avg")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert model.pretrained_cfg["classifier"] + ".weight" in dict(model.named_parameters())


def test_middle_class_token_is_pooled_and_kept_out_of_intermediates():
    model = timm.create_model("localvim_test", cls_token="middle", rope=False).eval()
    assert model.global_pool == "token" and model.pos_embed.shape == (1, 17, 32)
    x = torch.randn(1, 3, 24, 40)
    with torch.no_grad():
        tokens = model.forward_features(x)
        assert tokens.shape == (1, 16, 32)  # 15 patches + the class token at index 7
        maps = model.forward_intermediates(x, indices=[0, 1], return_prefix_tokens=True, intermediates_only=True)
    assert [m.shape for m, _ in maps] == [(1, 32, 3, 5)] * 2
    assert maps[0][1].shape == (1, 1, 32)
    with pytest.raises(ValueError, match="RoPE with a class token"):
        LocalVimConfig(cls_token="middle", rope=True)


@pytest.mark.parametrize(("name", "shapes"), [("localvim_test", [(1, 32, 4, 6)] * 2), ("localvmamba_test", None)])
def test_features_only_and_intermediates(name, shapes):
    features = timm.create_model(name, features_only=True)
    out = features(torch.randn(1, 3, 32, 48))
    if shapes is None:
        shapes = [(1, 16, 8, 12), (1, 32, 4, 6)]
        assert features.feature_info.reduction() == [4, 8]
    assert [tuple(t.shape) for t in out] == shapes
    model = timm.create_model(name)
    final, inter = model.forward_intermediates(torch.randn(1, 3, 32, 32), indices=1)
    assert len(inter) == 1
    kept = model.prune_intermediate_layers([0])
    assert kept == [0] and len(model.layers) == 1 and model.num_classes == 0


def test_search_supernets_have_eight_weighted_directions():
    vim = timm.create_model("localvim_test_search")
    assert vim.layers[0].mixer.multi_scan.weights.shape == (8, 1, 1, 1)
    assert hasattr(vim.layers[0].mixer, "conv1d_7")
    vmamba = timm.create_model("localvmamba_test_search")
    assert vmamba.layers[1].blocks[0].op.x_proj_weight.shape[0] == 8


def test_no_weight_decay_marks_and_param_counts():
    model = timm.create_model("localvim_test")
    flagged = {n for n, p in model.named_parameters() if getattr(p, "_no_weight_decay", False)}
    assert "layers.0.mixer.A_log_3" in flagged and "layers.1.mixer.D_0" in flagged
    assert model.no_weight_decay() == {"pos_embed", "cls_token"}
    # the released sizes: LocalVim-T 8M, LocalVMamba-T 26M (README table), on the meta device
    with torch.device("meta"):
        vim_t = LocalVim.from_config(PRESETS["localvim_tiny"])
        vmamba_t = LocalVMamba.from_config(PRESETS["localvmamba_tiny"])
    assert round(sum(p.numel() for p in vim_t.parameters()) / 1e6) == 8
    assert round(sum(p.numel() for p in vmamba_t.parameters()) / 1e6) == 26


def test_save_and_load_localvim(tmp_path):
    model = longseq.from_pretrained("localvim_test", cls_token="middle", rope=False)
    model.save_pretrained(tmp_path)
    again = LocalVim.from_pretrained(tmp_path)
    assert again.config == model.config
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def test_configs_validate():
    with pytest.raises(ValueError, match="directions has 1 layers"):
        LocalVimConfig(depth=2, directions=[["h"]])
    with pytest.raises(ValueError, match="unknown scan direction"):
        LocalVMambaConfig(dims=[8], depths=[1], directions=[["zigzag"]])
    with pytest.raises(ValueError, match=r"drop_path_rate must lie in \[0, 1\], got -0.1"):
        LocalVMambaConfig(drop_path_rate=-0.1)
    with pytest.raises(ValueError, match="d_conv must be odd"):
        LocalVMambaConfig(d_conv=4)
    with pytest.raises(CheckpointError, match="invalid LocalVimConfig: depth must be >= 1, got 0"):
        longseq.from_pretrained("localvim_test", depth=0, directions=[])


def test_timm_builds_every_registered_variant():
    names = timm.list_models("local*")
    assert set(names) == set(PRESETS)
    for name in names:
        with torch.device("meta"):
            model = timm.create_model(name)
        assert model.num_classes == PRESETS[name].num_classes, name


def test_import_vision_registers_without_heavy_imports():
    """`import longseq.vision.local_mamba` registers the models with timm, and loads neither BTB3D nor lightning."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, timm, longseq.vision.local_mamba; print('localvim_tiny' in timm.list_models('localvim*'), "
        "any(m.startswith('longseq.vision.btb3d') for m in sys.modules), 'lightning' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.split() == ["True", "False", "False"]
