"""Parity with the official LocalMamba code (tests/fixtures/localvim_a, localvim_rope_a, localvmamba_a: tiny
official-format checkpoints and the outputs hunto/LocalMamba computes from them), read through
`longseq.from_pretrained` and through timm's ``pretrained=True``."""

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

import longseq
import longseq.vision.local_mamba  # noqa: F401  (registers the models with timm)
from longseq.core.checkpoint import CheckpointError, load_pickle
from longseq.vision.local_mamba.convert import convert_state_dict, load_release_file
from longseq.vision.local_mamba.local_vim import LocalVim
from longseq.vision.local_mamba.local_vmamba import LocalVMamba

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ATOL = 1e-5
# Each fixture, the released architecture it shrinks, and the fields that differ (the file records no directions).
ARCHITECTURES = {"localvim_a": "localvim_tiny_middle_cls_token", "localvim_rope_a": "localvim_tiny",
                 "localvmamba_a": "localvmamba_small"}  # fmt: skip


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


def _fields(name: str) -> dict:
    """What differs from the released architecture (cls_token and rope follow it)."""
    if name == "localvmamba_a":
        return _vmamba_args()
    return {k: v for k, v in _vim_args(name).items() if k not in ("cls_token", "rope")}


@pytest.mark.parametrize("fixture", ["localvim_a", "localvim_rope_a", "localvmamba_a"])
def test_each_fixture_loads_through_from_pretrained_in_eval_mode(fixture):
    path = FIXTURES / fixture / "checkpoint.pth"
    model = longseq.from_pretrained(path, architecture=ARCHITECTURES[fixture], **_fields(fixture))
    assert type(model) is (LocalVMamba if fixture == "localvmamba_a" else LocalVim)
    assert not model.training and not any(m.training for m in model.modules())
    expected = load_file(FIXTURES / fixture / "expected.safetensors")
    with torch.no_grad():
        features = model.forward_features(expected["images"])
    torch.testing.assert_close(model.forward_head(features), expected["logits"], rtol=0, atol=ATOL)
    torch.testing.assert_close(model.forward_head(features, pre_logits=True), expected["features"], rtol=0, atol=ATOL)


def _load(fixture: str):
    path = FIXTURES / fixture / "checkpoint.pth"
    return longseq.from_pretrained(path, architecture=ARCHITECTURES[fixture], **_fields(fixture))


@pytest.mark.parametrize("fixture", ["localvim_a", "localvim_rope_a"])
def test_localvim_matches_official_logits_features_and_streams(fixture):
    model = _load(fixture)
    expected = load_file(FIXTURES / fixture / "expected.safetensors")
    with torch.no_grad():  # one pass: streams, then the final norm and the head
        tokens, grid, cls_position = model._tokens(expected["images"])
        hidden, residual, streams = model._run_blocks(tokens, grid, cls_position, take=list(range(len(model.layers))))
        final = model._final_norm(hidden, residual)
    torch.testing.assert_close(model.forward_head(final), expected["logits"], rtol=0, atol=ATOL)
    torch.testing.assert_close(model.forward_head(final, pre_logits=True), expected["features"], rtol=0, atol=ATOL)
    assert len(streams) == len(model.layers)
    for i, stream in enumerate(streams):
        torch.testing.assert_close(stream, expected[f"stream.{i}"], rtol=0, atol=ATOL)


def test_localvmamba_matches_official_logits_features_and_stages():
    model = _load("localvmamba_a")
    expected = load_file(FIXTURES / "localvmamba_a" / "expected.safetensors")
    with torch.no_grad():
        final, stages = model.forward_intermediates(expected["images"], output_fmt="NHWC")
    torch.testing.assert_close(model.forward_head(final), expected["logits"], rtol=0, atol=ATOL)
    torch.testing.assert_close(model.forward_head(final, pre_logits=True), expected["features"], rtol=0, atol=ATOL)
    for s, stage in enumerate(stages):
        torch.testing.assert_close(stage, expected[f"stage.{s}"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("fixture", ["localvim_a", "localvim_rope_a", "localvmamba_a"])
def test_timm_pretrained_reads_the_same_weights(fixture):
    file = FIXTURES / fixture / "checkpoint.pth"
    args = _vmamba_args() if fixture == "localvmamba_a" else _vim_args(fixture)
    model = timm.create_model(
        ARCHITECTURES[fixture], pretrained=True, pretrained_cfg_overlay={"file": str(file)}, **args
    )
    expected = _load(fixture).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_a_file_that_does_not_fit_the_architecture_is_one_line():
    path = FIXTURES / "localvim_a" / "checkpoint.pth"
    cases = {
        "does not record its LocalVim scan directions": {},
        "shape mismatch": {"architecture": "localvim_tiny_middle_cls_token"},
        "neither a LocalMamba preset": {"architecture": "localvim_giant"},
        r"\(localvim-release\) takes no setting warp": {"architecture": "localvim_tiny", "warp": 1},
        r"drop_rate must lie in \[0, 1\]": {"architecture": "localvim_tiny", "drop_rate": 1.5},
    }
    for message, overrides in cases.items():
        with pytest.raises(CheckpointError, match=message) as err:
            longseq.from_pretrained(path, **overrides)
        assert "\n" not in str(err.value)


def test_each_direction_keeps_its_own_a_log():
    """The released files hold four different A_log_k per layer; each must land in its own tensor."""
    file = FIXTURES / "localvim_a" / "checkpoint.pth"
    source = load_pickle(file)["state_dict"]
    assert not torch.equal(source["layers.0.mixer.A_log_0"], source["layers.0.mixer.A_log_3"])
    model = load_release_file(LocalVim(**_vim_args("localvim_a")), file)
    for i in range(len(model.layers)):
        for k in range(4):
            assert torch.equal(getattr(model.layers[i].mixer, f"A_log_{k}"), source[f"layers.{i}.mixer.A_log_{k}"])


def test_aliased_a_log_is_caught_by_the_key_by_key_check():
    """Upstream's MultiMamba shares one tensor across A_log_0..3 (issue #16); the check refuses such a load."""
    model = LocalVim(**_vim_args("localvim_a"))
    mixer = model.layers[0].mixer
    mixer.A_log_1 = mixer.A_log_0  # the upstream aliasing
    with pytest.raises(CheckpointError, match="A_log"):
        load_release_file(model, FIXTURES / "localvim_a" / "checkpoint.pth")


def test_our_rope_tables_equal_the_released_buffers():
    source = load_pickle(FIXTURES / "localvim_rope_a" / "checkpoint.pth")["state_dict"]
    model = LocalVim(**_vim_args("localvim_rope_a"))
    torch.testing.assert_close(model.rope.freqs_cos, source["rope.freqs_cos"], rtol=0, atol=1e-6)
    torch.testing.assert_close(model.rope.freqs_sin, source["rope.freqs_sin"], rtol=0, atol=1e-6)


def test_new_resolution_class_count_and_channels_convert():
    """A 64-px checkpoint into a 96-px, 5-class, 1-channel model: tables resized, fresh head, stem adapted."""
    args = {**_vim_args("localvim_a"), "img_size": 96, "num_classes": 5, "in_chans": 1}
    model = load_release_file(LocalVim(**args), FIXTURES / "localvim_a" / "checkpoint.pth").eval()
    assert model.pos_embed.shape == (1, 37, 64)
    source = load_pickle(FIXTURES / "localvim_a" / "checkpoint.pth")["state_dict"]
    torch.testing.assert_close(model.pos_embed[:, 18], source["pos_embed"][:, 8])  # the class token's position
    torch.testing.assert_close(model.patch_embed.proj.weight, source["patch_embed.proj.weight"].sum(1, keepdim=True))
    assert model(torch.randn(1, 1, 96, 80)).shape == (1, 5)


def test_checkpoint_of_another_model_is_refused_with_the_key_named():
    with pytest.raises(CheckpointError, match="keys no rule maps: classifier.head.bias"):
        load_release_file(LocalVim(**_vim_args("localvim_a")), FIXTURES / "localvmamba_a" / "checkpoint.pth")
    with pytest.raises(CheckpointError, match="keys no rule maps: cls_token, head.bias"):
        load_release_file(LocalVMamba(**_vmamba_args()), FIXTURES / "localvim_a" / "checkpoint.pth")
    # right family, wrong directions per layer (2 instead of 4): the missing/unexpected keys are named
    args = {**_vim_args("localvim_a"), "directions": [["h", "h_flip"]] * 4}
    with pytest.raises(CheckpointError, match="unexpected layers.0.mixer"):
        load_release_file(LocalVim(**args), FIXTURES / "localvim_a" / "checkpoint.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_release_file(LocalVim(**_vim_args("localvim_a")), FIXTURES / "missing.ckpt")


def test_state_dict_overlay_goes_through_the_filter():
    source = load_pickle(FIXTURES / "localvmamba_a" / "checkpoint.pth")
    overlay = {"state_dict": source, "num_classes": 10}  # timm keeps the head only when the class counts agree
    model = timm.create_model("localvmamba_tiny", pretrained=True, pretrained_cfg_overlay=overlay, **_vmamba_args())
    expected = convert_state_dict(source, model, "fixture")
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_our_checkpoint_round_trips(tmp_path):
    model = _load("localvmamba_a")
    model.save_pretrained(tmp_path / "ckpt")
    again = LocalVMamba.from_pretrained(tmp_path / "ckpt")
    images = torch.randn(1, 3, 32, 40)
    with torch.no_grad():
        torch.testing.assert_close(again(images), model(images), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="not a LocalVim"):
        LocalVim.from_pretrained(tmp_path / "ckpt")
