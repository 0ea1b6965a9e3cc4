"""The released-checkpoint converter and parity with the official code (fixture btb3d_a)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from longseq.core.checkpoint import CheckpointError, load_tensors
from longseq.vision.btb3d.convert import convert_state_dict, infer_config, load_released, source_key
from longseq.vision.btb3d.discriminators import Discriminator2D, Discriminator3D
from longseq.vision.btb3d.layers import haar_patch
from longseq.vision.btb3d.model import BTB3D, BTB3D_PRESETS

FIXTURE = Path(__file__).parents[1] / "fixtures" / "btb3d_a"
ATOL = 1e-5


@pytest.fixture(scope="module")
def expected():
    return load_file(FIXTURE / "expected.safetensors")


@pytest.fixture(scope="module")
def model():
    model, discriminators = load_released(FIXTURE / "checkpoint.ckpt")
    assert discriminators == {}
    return model.eval()


def test_config_read_off_the_weights(model):
    assert model.config == BTB3D_PRESETS["btb3d-8x8x8-w32"]


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


def test_encoder_block_naming_quirk_for_the_released_depth():
    # The release has 4 blocks per stage: stage 2's blocks 1..3 are called res_block_0_{j}.
    model = BTB3D(BTB3D_PRESETS["btb3d-8x8x8"], device="meta")
    names = {source_key(k) for k in model.state_dict()}
    assert "encoder.res_blocks.res_block_2.res_block_0_3.conv_0.conv.weight" in names
    assert "encoder.res_blocks.res_block_2.res_block_2_0.conv_0.conv.weight" in names
    assert "encoder.res_blocks.res_block_2.res_block_2_3.conv_0.conv.weight" not in names
    assert "decoder.res_blocks.res_block_2.res_block_2_3.conv_0.conv.weight" in names
    assert "encoder.res_blocks.res_block_1.res_block_1_0.conv_shortcut.conv.weight" in names  # 96 -> 192
    assert len(names) == len(model.state_dict())


def _fake_release(config_name: str) -> dict[str, torch.Tensor]:
    """A released-layout state dict for a preset, from our own random model mapped back by `source_key`."""
    model = BTB3D(BTB3D_PRESETS[config_name])
    state = {source_key(k): v for k, v in model.state_dict().items()}
    state["quantize.mask"] = 2 ** torch.arange(model.config.token_bits - 1, -1, -1)
    return state


def test_16x16x8_layout_round_trips_through_the_map():
    state = _fake_release("btb3d-tiny-16x16x8")
    config = infer_config(state, norm_groups=4)
    assert config == BTB3D_PRESETS["btb3d-tiny-16x16x8"]
    model = BTB3D(config)
    model.load_state_dict(convert_state_dict(state, model), strict=True)


def test_training_checkpoint_bf16_with_prefix_and_discriminators(tmp_path, expected):
    release = load_tensors(FIXTURE / "checkpoint.ckpt")
    d3 = Discriminator3D(filters=8, channel_multipliers=(1, 2, 4), spatial_size=32, num_frames=17)
    d2 = Discriminator2D(filters=8, channel_multipliers=(1, 2, 4), spatial_size=32)
    state = {f"tokenizer.{k}": v.bfloat16() if v.is_floating_point() else v for k, v in release.items()}
    state |= {f"discriminator.{k}": v.bfloat16() for k, v in d3.state_dict().items()}
    state |= {f"discriminator_2d.{k}": v.bfloat16() for k, v in d2.state_dict().items()}
    state["perceptual_model.features.0.weight"] = torch.zeros(2, 3, 3, 3, dtype=torch.bfloat16)
    path = tmp_path / "model.safetensors"
    save_file(state, path)
    model, discriminators = load_released(path)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    released_conv_in = release["encoder.conv_first.conv.weight"].bfloat16().float()
    torch.testing.assert_close(model.encoder.conv_in.weight, released_conv_in)
    loaded3 = Discriminator3D(filters=8, channel_multipliers=(1, 2, 4), spatial_size=32, num_frames=17)
    loaded3.load_converted(discriminators["discriminator"])
    torch.testing.assert_close(loaded3.linear1.weight, d3.linear1.weight.bfloat16().float())
    Discriminator2D(filters=8, channel_multipliers=(1, 2, 4), spatial_size=32).load_converted(
        discriminators["discriminator_2d"]
    )
    with torch.no_grad():
        ids = model.eval().tokenize(expected["volume"]).ids
    assert ids.shape == (1, 3, 4, 4)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("encoder.conv_first.conv.bias"), "missing key encoder.conv_first.conv.bias"),
        (lambda s: s.update({"encoder.extra.weight": torch.zeros(1)}), "unexpected key encoder.extra.weight"),
        (lambda s: s.pop("quantize.mask"), "missing key quantize.mask"),
        (lambda s: s.update({"quantize.mask": torch.arange(6)}), "quantize.mask"),
        (
            lambda s: s.update({"decoder.conv_last.conv.bias": torch.zeros(3)}),
            "shape mismatch",
        ),
    ],
)
def test_bad_checkpoints_name_the_key(tmp_path, edit, message):
    state = load_tensors(FIXTURE / "checkpoint.ckpt")
    edit(state)
    path = tmp_path / "bad.safetensors"
    save_file(state, path)
    with pytest.raises(CheckpointError, match=message):
        load_released(path)


def test_unreadable_and_unsafe_files(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_released(garbage)
    with pytest.raises(CheckpointError, match="not found"):
        load_released(tmp_path / "missing.ckpt")
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a BTB3D tokenizer"):
        load_released(other)
    training = tmp_path / "training.safetensors"
    save_file({"tokenizer.x": torch.zeros(1), "ema.x": torch.zeros(1)}, training)
    with pytest.raises(CheckpointError, match="unexpected key ema.x"):
        load_released(training)
