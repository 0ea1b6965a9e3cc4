"""``img_size`` as a side or (h, w) for every LocalVim / LocalVMamba preset, and checkpoints carried between sizes,
non-square included."""

import json

import pytest
import timm
import torch

import longseq
import longseq.vision.local_mamba  # noqa: F401  (registers the models with timm)
from longseq.core.checkpoint import CheckpointError
from longseq.vision.local_mamba.local_vim import LocalVim
from longseq.vision.local_mamba.presets import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_takes_a_non_square_img_size(name):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = timm.create_model(name, img_size=(64, 48))
    assert model.config.img_size == (64, 48)
    if isinstance(model, LocalVim):
        p = model.config.patch_size
        assert model.grid == (64 // p, 48 // p)
        if hasattr(model, "pos_embed"):
            assert model.pos_embed.shape[1] == (64 // p) * (48 // p) + model.num_prefix_tokens
    assert timm.models.get_pretrained_cfg(name).input_size[1:] == (
        (PRESETS[name].img_size,) * 2 if isinstance(PRESETS[name].img_size, int) else PRESETS[name].img_size
    )


def test_a_checkpoint_trained_at_64x48_loads_through_timm(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model(
        "localvim_tiny_middle_cls_token",
        img_size=(64, 48),
        num_classes=5,
        depth=2,
        directions=PRESETS["localvim_tiny_middle_cls_token"].directions[:2],
    ).eval()
    torch.nn.init.normal_(model.pos_embed, std=0.5)  # position tables that matter
    model.save_pretrained(tmp_path / "ck")
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["img_size"] == [64, 48]
    images = torch.randn(2, 3, 64, 48)
    overlay = {"file": str(tmp_path / "ck" / "model.safetensors")}
    again = timm.create_model(
        "localvim_tiny_middle_cls_token",
        img_size=(64, 48),
        num_classes=5,
        depth=2,
        directions=model.config.directions,
        pretrained=True,
        pretrained_cfg_overlay=overlay,
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(images), model(images), rtol=0, atol=0)
    ours = longseq.from_pretrained(tmp_path / "ck")
    assert ours.config.img_size == (64, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), model(images), rtol=0, atol=0)

    # to another non-square size: the tables are resized from the 4 x 3 grid the file records
    wide = longseq.from_pretrained(tmp_path / "ck", img_size=(32, 80))
    via_timm = timm.create_model(
        "localvim_tiny_middle_cls_token",
        img_size=(32, 80),
        num_classes=5,
        depth=2,
        directions=model.config.directions,
        pretrained=True,
        pretrained_cfg_overlay=overlay,
    )
    assert wide.grid == (2, 5) and wide.pos_embed.shape == (1, 11, 192)
    torch.testing.assert_close(wide.pos_embed, via_timm.pos_embed, rtol=0, atol=0)
    assert torch.equal(wide.pos_embed[:, 5], model.pos_embed[:, 6])  # the middle class token moves, unchanged
    back = longseq.from_pretrained(tmp_path / "ck", img_size=(64, 48))  # same grid: the file's tables as they are
    torch.testing.assert_close(back.pos_embed, model.pos_embed, rtol=0, atol=0)


def test_a_bare_non_square_file_needs_its_size(tmp_path):
    model = timm.create_model("localvim_test", img_size=(32, 16), num_classes=3)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="not a square patch grid .*img_size=\\(h, w\\)"):
        timm.create_model(
            "localvim_test",
            img_size=(32, 32),
            num_classes=3,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(tmp_path / "bare.pth")},
        )
    same = timm.create_model(
        "localvim_test",
        img_size=(32, 16),
        num_classes=3,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(tmp_path / "bare.pth")},
    )
    assert torch.equal(same.pos_embed, model.pos_embed)


def test_bad_img_size_is_refused():
    for bad, message in [((64, 48, 3), "img_size must be an int or"), ((4, 64), "smaller than patch_size")]:
        with pytest.raises(ValueError, match=message):
            timm.create_model("localvim_test", img_size=bad)
