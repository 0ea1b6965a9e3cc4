"""Parity with the official LocalMamba code (tests/fixtures/localvim_a, localvim_rope_a, localvmamba_a: tiny
official-format checkpoints and the outputs hunto/LocalMamba computes from them)."""

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

import longseq.vision.local_mamba  # noqa: F401  (registers the models with timm)
from longseq.core.checkpoint import CheckpointError, load_pickle
from longseq.vision.local_mamba.convert import convert_state_dict, load_official
from longseq.vision.local_mamba.local_vim import LocalVim
from longseq.vision.local_mamba.local_vmamba import LocalVMamba

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ATOL = 1e-5


def _kwargs(name: str) -> dict:
    return json.loads((FIXTURES / name / "config.json").read_text())["kwargs"]


def _vim_args(name: str) -> dict:
    k = _kwargs(name)
    return {
        "img_size": k["img_size"],
        "patch_size": k["patch_size"],
        "embed_dim": k["embed_dim"],
        "depth": k["depth"],
        "num_classes": k["num_classes"],
        "directions": k["directions"],
        "cls_token": "middle" if k.get("use_middle_cls_token") else "none",
        "rope": k["if_rope"],
    }


def _vmamba_args() -> dict:
    k = _kwargs("localvmamba_a")
    return {"dims": k["dims"], "depths": k["depths"], "num_classes": k["num_classes"], "directions": k["directions"]}


@pytest.mark.parametrize(
    ("fixture", "arch"), [("localvim_a", "localvim_tiny_middle_cls_token"), ("localvim_rope_a", "localvim_tiny")]
)
def test_localvim_matches_official_logits_features_and_streams(fixture, arch):
    file = FIXTURES / fixture / "checkpoint.pth"
    model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": str(file)}, **_vim_args(fixture))
    model.eval()
    expected = load_file(FIXTURES / fixture / "expected.safetensors")
    images = expected["images"]
    with torch.no_grad():  # one pass: streams, then the final norm and the head
        tokens, grid, cls_position = model._tokens(images)
        hidden, residual, streams = model._run_blocks(tokens, grid, cls_position, take=list(range(len(model.layers))))
        final = model._final_norm(hidden, residual)
    torch.testing.assert_close(model.forward_head(final), expected["logits"], rtol=0, atol=ATOL)
    torch.testing.assert_close(model.forward_head(final, pre_logits=True), expected["features"], rtol=0, atol=ATOL)
    assert len(streams) == len(model.layers)
    for i, stream in enumerate(streams):
        torch.testing.assert_close(stream, expected[f"stream.{i}"], rtol=0, atol=ATOL)


def test_localvmamba_matches_official_logits_features_and_stages():
    file = FIXTURES / "localvmamba_a" / "checkpoint.pth"
    model = timm.create_model(
        "localvmamba_small", pretrained=True, pretrained_cfg_overlay={"file": str(file)}, **_vmamba_args()
    ).eval()
    expected = load_file(FIXTURES / "localvmamba_a" / "expected.safetensors")
    images = expected["images"]
    with torch.no_grad():
        final, stages = model.forward_intermediates(images, output_fmt="NHWC")
    torch.testing.assert_close(model.forward_head(final), expected["logits"], rtol=0, atol=ATOL)
    torch.testing.assert_close(model.forward_head(final, pre_logits=True), expected["features"], rtol=0, atol=ATOL)
    for s, stage in enumerate(stages):
        torch.testing.assert_close(stage, expected[f"stage.{s}"], rtol=0, atol=ATOL)


def test_each_direction_keeps_its_own_a_log():
    """The released files hold four different A_log_k per layer; each must land in its own tensor."""
    file = FIXTURES / "localvim_a" / "checkpoint.pth"
    source = load_pickle(file)["state_dict"]
    assert not torch.equal(source["layers.0.mixer.A_log_0"], source["layers.0.mixer.A_log_3"])
    model = load_official(LocalVim(**_vim_args("localvim_a")), file)
    for i in range(len(model.layers)):
        for k in range(4):
            assert torch.equal(getattr(model.layers[i].mixer, f"A_log_{k}"), source[f"layers.{i}.mixer.A_log_{k}"])


def test_aliased_a_log_is_caught_by_the_key_by_key_check():
    """Upstream's MultiMamba shares one tensor across A_log_0..3 (issue #16); the check refuses such a load."""
    model = LocalVim(**_vim_args("localvim_a"))
    mixer = model.layers[0].mixer
    mixer.A_log_1 = mixer.A_log_0  # the upstream aliasing
    with pytest.raises(CheckpointError, match="A_log"):
        load_official(model, FIXTURES / "localvim_a" / "checkpoint.pth")


def test_our_rope_tables_equal_the_released_buffers():
    source = load_pickle(FIXTURES / "localvim_rope_a" / "checkpoint.pth")["state_dict"]
    model = LocalVim(**_vim_args("localvim_rope_a"))
    torch.testing.assert_close(model.rope.freqs_cos, source["rope.freqs_cos"], rtol=0, atol=1e-6)
    torch.testing.assert_close(model.rope.freqs_sin, source["rope.freqs_sin"], rtol=0, atol=1e-6)


def test_new_resolution_class_count_and_channels_convert():
    """A 64-px checkpoint into a 96-px, 5-class, 1-channel model: tables resized, fresh head, stem adapted."""
    args = {**_vim_args("localvim_a"), "img_size": 96, "num_classes": 5, "in_chans": 1}
    model = load_official(LocalVim(**args), FIXTURES / "localvim_a" / "checkpoint.pth").eval()
    assert model.pos_embed.shape == (1, 37, 64)
    source = load_pickle(FIXTURES / "localvim_a" / "checkpoint.pth")["state_dict"]
    torch.testing.assert_close(model.pos_embed[:, 18], source["pos_embed"][:, 8])  # the class token's position
    torch.testing.assert_close(model.patch_embed.proj.weight, source["patch_embed.proj.weight"].sum(1, keepdim=True))
    assert model(torch.randn(1, 1, 96, 80)).shape == (1, 5)


def test_checkpoint_of_another_model_is_refused_with_the_key_named():
    with pytest.raises(CheckpointError, match="patch_embed.0.weight. is not a key of an official LocalVim"):
        load_official(LocalVim(**_vim_args("localvim_a")), FIXTURES / "localvmamba_a" / "checkpoint.pth")
    with pytest.raises(CheckpointError, match=r"patch_embed.proj.weight|pos_embed|layers\.0\.mixer"):
        load_official(LocalVMamba(**_vmamba_args()), FIXTURES / "localvim_a" / "checkpoint.pth")
    # right family, wrong directions per layer (2 instead of 4): the missing/unexpected keys are named
    args = {**_vim_args("localvim_a"), "directions": [["h", "h_flip"]] * 4}
    with pytest.raises(CheckpointError, match="unexpected layers.0.mixer"):
        load_official(LocalVim(**args), FIXTURES / "localvim_a" / "checkpoint.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_official(LocalVim(**_vim_args("localvim_a")), FIXTURES / "missing.ckpt")


def test_state_dict_overlay_goes_through_the_filter():
    source = load_pickle(FIXTURES / "localvmamba_a" / "checkpoint.pth")
    overlay = {"state_dict": source, "num_classes": 10}  # timm keeps the head only when the class counts agree
    model = timm.create_model("localvmamba_tiny", pretrained=True, pretrained_cfg_overlay=overlay, **_vmamba_args())
    expected = convert_state_dict(source, model, "fixture")
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_our_checkpoint_round_trips(tmp_path):
    model = load_official(LocalVMamba(**_vmamba_args()), FIXTURES / "localvmamba_a" / "checkpoint.pth").eval()
    model.save_pretrained(tmp_path / "ckpt")
    again = LocalVMamba.from_pretrained(tmp_path / "ckpt").eval()
    images = torch.randn(1, 3, 32, 40)
    with torch.no_grad():
        torch.testing.assert_close(again(images), model(images), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="not a LocalVim"):
        LocalVim.from_pretrained(tmp_path / "ckpt")
