"""The released BTB3D files through `longseq.from_pretrained`, and parity with the official code (fixture btb3d_a)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import longseq
from longseq.core.checkpoint import CheckpointError, load_tensors
from longseq.vision.btb3d.convert import TOKENIZER_KEYS
from longseq.vision.btb3d.discriminators import Discriminator2D, Discriminator3D
from longseq.vision.btb3d.layers import haar_patch
from longseq.vision.btb3d.model import BTB3D, BTB3D_PRESETS

FIXTURE = Path(__file__).parents[1] / "fixtures" / "btb3d_a"
ATOL = 1e-5

_RELEASED_INNER = {
    "norm1": "norm_0.norm_fn",
    "conv1": "conv_0.conv",
    "norm2": "norm_1.norm_fn",
    "conv2": "conv_1.conv",
    "shortcut": "conv_shortcut.conv",
}


def released_name(key: str) -> str:
    """The released name of one of our keys, written out independently of the converter's rules."""
    parts = key.split(".")
    net, rest = parts[0], parts[1:]
    if rest[0] == "stages" and rest[2] == "blocks":
        stage, block = int(rest[1]), int(rest[3])
        # The released encoder names block 0 of stage i `res_block_{i}_0` but blocks j >= 1 `res_block_0_{j}`.
        name = f"res_block_{stage}_{block}" if net == "decoder" or block == 0 else f"res_block_0_{block}"
        return f"{net}.res_blocks.res_block_{stage}.{name}.{_RELEASED_INNER[rest[4]]}.{rest[5]}"
    if rest[0] == "mid":
        group = "res_block_final" if net == "encoder" else "res_block_pre"
        return f"{net}.res_blocks.{group}.{group}_{rest[1]}.{_RELEASED_INNER[rest[2]]}.{rest[3]}"
    if rest[0] == "stages":
        stage, what = rest[1], rest[2]
        if what == "downsample":
            return f"encoder.conv_downsample_blocks.conv_downsample_{stage}.conv.{rest[3]}"
        if what == "upsample":
            return f"decoder.conv_upsample_blocks.conv_upsample_{stage}.conv1.conv.{rest[3]}"
        return f"decoder.cond_norm_layers.cond_norm_{stage}.{rest[3]}.{rest[4]}"
    names = {"conv_in": "conv_first.conv", "conv_out": "conv_last.conv", "norm_out": "final_norm.norm_fn"}
    return f"{net}.{names[rest[0]]}.{rest[1]}"


def fake_release(model: BTB3D) -> dict[str, torch.Tensor]:
    """A released-layout state dict holding ``model``'s weights."""
    state = {released_name(k): v.clone() for k, v in model.state_dict().items()}
    state["quantize.mask"] = 2 ** torch.arange(model.config.token_bits - 1, -1, -1)
    return state


@pytest.fixture(scope="module")
def expected():
    return load_file(FIXTURE / "expected.safetensors")


@pytest.fixture(scope="module")
def model():
    return longseq.from_pretrained(FIXTURE / "checkpoint.ckpt")


def test_the_fixture_loads_through_from_pretrained_in_eval_mode():
    model = longseq.from_pretrained(FIXTURE / "checkpoint.ckpt")
    assert type(model) is BTB3D and not model.training
    assert not any(module.training for module in model.modules())
    assert isinstance(BTB3D.from_pretrained(str(FIXTURE / "checkpoint.ckpt")), BTB3D)


def test_config_read_off_the_weights_agrees_with_the_official_yaml(model):
    assert model.config == BTB3D_PRESETS["btb3d-8x8x8-w32"]
    official = yaml.safe_load((FIXTURE / "config.yaml").read_text())["model"]
    for part in ("encoder", "decoder"):
        assert official[part]["filters"] == model.config.filters
        assert official[part]["num_res_blocks"] == model.config.num_res_blocks
        assert tuple(official[part]["channel_multipliers"]) == model.config.channel_multipliers
        assert tuple(official[part]["temporal_downsample"]) == model.config.temporal_downsample
    assert official["quantize_model"]["token_size"] == model.config.token_bits
    assert official["quantize_model"]["codebook_size"] == 2**model.config.token_bits


def test_haar_patching(expected):
    torch.testing.assert_close(haar_patch(expected["volume"]), expected["patched"], atol=ATOL, rtol=0)


def test_window_latents(model, expected):
    patched = expected["patched"]
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(patched[:, :, 0:5]), expected["latent_window_0"], atol=ATOL, rtol=0)
        torch.testing.assert_close(model.encoder(patched[:, :, 4:9]), expected["latent_window_1"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("tiled, suffix", [(True, ""), (False, "_full")])
def test_latents_ids_and_reconstruction(model, expected, tiled, suffix):
    volume = expected["volume"]
    with torch.no_grad():
        latent = model.encode(volume, tiled=tiled)
        tokens = model.quantize_latent(latent)
        recon = model.decode(tokens.quantized)
        recon_from_ids = model.decode_ids(tokens.ids)
    torch.testing.assert_close(latent, expected["latent" + suffix], atol=ATOL, rtol=0)
    assert torch.equal(tokens.ids.flatten(1), expected["indices" + suffix])
    assert torch.equal(tokens.quantized, expected["quantized" + suffix])
    torch.testing.assert_close(recon, expected["recon" + suffix], atol=ATOL, rtol=0)
    torch.testing.assert_close(recon_from_ids, expected["recon" + suffix], atol=ATOL, rtol=0)
    if tiled:
        with torch.no_grad():
            decoded = model.decoder(tokens.quantized)
        torch.testing.assert_close(decoded, expected["decoded_patched"], atol=ATOL, rtol=0)


def test_the_key_map_covers_the_released_depth_and_its_naming_quirk():
    # The release has 4 blocks per stage: stage 2's blocks 1..3 are called res_block_0_{j}.
    model = BTB3D(BTB3D_PRESETS["btb3d-8x8x8"], device="meta")
    released = {released_name(k): torch.zeros(0) for k in model.state_dict()}
    assert "encoder.res_blocks.res_block_2.res_block_0_3.conv_0.conv.weight" in released
    assert "encoder.res_blocks.res_block_1.res_block_1_0.conv_shortcut.conv.weight" in released  # 96 -> 192
    assert "decoder.res_blocks.res_block_2.res_block_2_3.conv_0.conv.weight" in released
    renamed = TOKENIZER_KEYS.rename(released, "release")
    assert sorted(renamed) == sorted(model.state_dict())


def test_a_16x16x8_release_loads_with_its_norm_groups_as_an_override(tmp_path):
    ours = BTB3D(BTB3D_PRESETS["btb3d-tiny-16x16x8"])
    save_file(fake_release(ours), tmp_path / "release.safetensors")
    loaded = longseq.from_pretrained(tmp_path / "release.safetensors", norm_groups=4, window_size=9)
    assert loaded.config == dataclasses.replace(BTB3D_PRESETS["btb3d-tiny-16x16x8"], window_size=9)
    for key, value in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_bf16_training_checkpoint_keeps_only_its_tokenizer(tmp_path):
    release = load_tensors(FIXTURE / "checkpoint.ckpt")
    d3 = Discriminator3D(filters=8, channel_multipliers=(1, 2, 4), spatial_size=32, num_frames=17)
    d2 = Discriminator2D(filters=8, channel_multipliers=(1, 2, 4), spatial_size=32)
    state = {f"tokenizer.{k}": v.bfloat16() if v.is_floating_point() else v for k, v in release.items()}
    state |= {f"discriminator.{k}": v.bfloat16() for k, v in d3.state_dict().items()}
    state |= {f"discriminator_2d.{k}": v.bfloat16() for k, v in d2.state_dict().items()}
    state["perceptual_model.features.0.weight"] = torch.zeros(2, 3, 3, 3, dtype=torch.bfloat16)
    save_file(state, tmp_path / "model.safetensors")
    model = longseq.from_pretrained(tmp_path / "model.safetensors")
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    released_conv_in = release["encoder.conv_first.conv.weight"].bfloat16().float()
    torch.testing.assert_close(model.encoder.conv_in.weight, released_conv_in)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("encoder.conv_first.conv.bias"), "missing encoder.conv_in.bias"),
        (lambda s: s.update({"encoder.extra.weight": torch.zeros(1)}), "keys no rule maps: encoder.extra.weight"),
        (lambda s: s.pop("quantize.mask"), "missing key quantize.mask"),
        (lambda s: s.update({"quantize.mask": torch.arange(6)}), "is not the 6-bit mask"),
        (lambda s: s.update({"decoder.conv_last.conv.bias": torch.zeros(3)}), "shape mismatch"),
        (lambda s: s.pop("encoder.conv_last.conv.weight"), "not a BTB3D tokenizer state dict"),
    ],
)
def test_bad_checkpoints_name_the_key(tmp_path, edit, message):
    state = load_tensors(FIXTURE / "checkpoint.ckpt")
    edit(state)
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match=message) as info:
        longseq.from_pretrained(tmp_path / "bad.safetensors")
    assert "\n" not in str(info.value)


def test_settings_the_weights_tell_are_refused_as_overrides():
    with pytest.raises(CheckpointError, match="takes no setting filters"):
        longseq.from_pretrained(FIXTURE / "checkpoint.ckpt", filters=64)
    with pytest.raises(CheckpointError, match="unsupported architecture"):
        longseq.from_pretrained(FIXTURE / "checkpoint.ckpt", norm_groups=5)


def test_unreadable_foreign_and_unsafe_files(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        longseq.from_pretrained(garbage)
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="no longseq family reads"):
        longseq.from_pretrained(other)
    training = {f"tokenizer.{k}": v for k, v in load_tensors(FIXTURE / "checkpoint.ckpt").items()}
    save_file(training | {"ema.x": torch.zeros(1)}, tmp_path / "training.safetensors")
    with pytest.raises(CheckpointError, match="keys no rule maps: ema.x"):
        longseq.from_pretrained(tmp_path / "training.safetensors")
