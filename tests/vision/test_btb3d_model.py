"""BTB3D tokenizer: Haar front end, causality, window tiling, LFQ, shapes, save/load."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from longseq.core.checkpoint import CheckpointError
from longseq.vision.btb3d.layers import haar_dwt3d, haar_idwt3d, haar_patch, haar_unpatch
from longseq.vision.btb3d.lfq import (
    LFQ,
    codes_to_indices,
    indices_to_codes,
    lfq_entropy_loss,
    lfq_entropy_loss_ref,
)
from longseq.vision.btb3d.model import BTB3D, BTB3D_PRESETS, BTB3DConfig


def tiny(**changes) -> BTB3D:
    return BTB3D(dataclasses.replace(BTB3D_PRESETS["btb3d-tiny"], **changes)).eval()


def test_haar_is_orthonormal_and_inverts_exactly():
    x = torch.randn(2, 3, 6, 10, 4, dtype=torch.float64)
    y = haar_dwt3d(x)
    assert y.shape == (2, 24, 3, 5, 2)
    torch.testing.assert_close(haar_idwt3d(y), x)
    # Orthonormal up to the 1 / (2 sqrt 2) rescale: energy scales by 1/8.
    torch.testing.assert_close(y.pow(2).sum() * 8, x.pow(2).sum())


def test_haar_subband_order_by_hand():
    # A single 2x2x2 block: channel k = 4 * t_bit + 2 * h_bit + w_bit of the (high = difference) bands.
    x = torch.randn(1, 1, 2, 2, 2, dtype=torch.float64)
    a = x[0, 0]
    y = haar_dwt3d(x)[0, :, 0, 0, 0] * (2 * 2**0.5)
    for k in range(8):
        st, sh, sw = (k >> 2) & 1, (k >> 1) & 1, k & 1
        expected = (
            sum(a[i, j, l] * (-1) ** (st * i + sh * j + sw * l) for i in range(2) for j in range(2) for l in range(2))
            / 2**1.5
        )
        torch.testing.assert_close(y[k], expected)


def test_causal_patch_round_trip_and_image_is_one_frame():
    x = torch.randn(1, 1, 9, 8, 8, dtype=torch.float64)
    assert haar_patch(x).shape == (1, 8, 5, 4, 4)
    torch.testing.assert_close(haar_unpatch(haar_patch(x)), x)
    image = torch.randn(2, 1, 1, 8, 8, dtype=torch.float64)
    assert haar_patch(image).shape == (2, 8, 1, 4, 4)
    torch.testing.assert_close(haar_unpatch(haar_patch(image)), image)


@pytest.mark.parametrize("preset", ["btb3d-tiny", "btb3d-tiny-16x16x8"])
@pytest.mark.parametrize("depth", [1, 9, 25])
def test_token_grid_depth_formula(preset, depth):
    model = BTB3D(BTB3D_PRESETS[preset]).eval()
    cd, ch, cw = model.config.compression
    assert cd == 8 and ch == cw == (8 if preset == "btb3d-tiny" else 16)
    x = torch.randn(1, 1, depth, 2 * ch, ch)
    with torch.no_grad():
        tokens = model.tokenize(x)
        assert tokens.ids.shape == (1, (depth - 1) // 8 + 1, 2, 1)
        assert tokens.ids.shape[1:] == model.config.token_grid(depth, 2 * ch, ch)
        assert model.decode(tokens.quantized).shape == x.shape


def test_released_token_grid_for_512x512x241():
    config = BTB3D_PRESETS["btb3d-8x8x8"]
    assert config.token_grid(241, 512, 512) == (31, 64, 64)
    assert BTB3D_PRESETS["btb3d-16x16x8"].token_grid(241, 512, 512) == (31, 32, 32)
    model = BTB3D(config, device="meta")
    assert model.encoder.conv_in.weight.shape == (96, 8, 3, 3, 3)
    assert model.encoder.conv_out.weight.shape == (18, 384, 1, 1, 1)


def test_encoder_is_causal_along_slices():
    model = tiny()
    x = torch.randn(1, 1, 17, 16, 16)
    y = x.clone()
    y[:, :, 9:] = torch.randn_like(y[:, :, 9:])  # change slices 9.. only
    with torch.no_grad():
        za, zb = model.encode(x, tiled=False), model.encode(y, tiled=False)
    # Latent frames 0 and 1 see slices 0..8 only.
    torch.testing.assert_close(za[:, :, :2], zb[:, :, :2])
    assert not torch.allclose(za[:, :, 2:], zb[:, :, 2:])


def test_tiled_encoding_equals_windows_encoded_separately():
    model = tiny()
    x = torch.randn(1, 1, 25, 16, 16)
    with torch.no_grad():
        z = model.encode(x)
        patched = haar_patch(x)
        windows = [model.encoder(patched[:, :, s : s + 5]) for s in (0, 4, 8)]
    expected = torch.cat([windows[0], windows[1][:, :, 1:], windows[2][:, :, 1:]], dim=2)
    torch.testing.assert_close(z, expected)
    # A volume of one window is encoded in one go either way.
    small = x[:, :, :9]
    with torch.no_grad():
        torch.testing.assert_close(model.encode(small), model.encode(small, tiled=False))


def test_larger_windows_keep_their_last_latent_frame():
    model = tiny(window_size=9)
    x = torch.randn(1, 1, 33, 8, 8)
    with torch.no_grad():
        z = model.encode(x)
        patched = haar_patch(x)
        w0, w1 = model.encoder(patched[:, :, 0:9]), model.encoder(patched[:, :, 4:13])
    assert z.shape[2] == 5
    torch.testing.assert_close(z[:, :, :3], w0)
    torch.testing.assert_close(z[:, :, 3:4], w1[:, :, -1:])


def test_lfq_ids_codes_round_trip_and_bit_order():
    codes = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, 1.0]]).T.reshape(1, 3, 2)  # ids 0b100, 0b011
    assert codes_to_indices(codes).tolist() == [[4, 3]]
    ids = torch.randint(0, 2**10, (2, 3, 4, 5))
    torch.testing.assert_close(codes_to_indices(indices_to_codes(ids, 10)), ids)


def test_lfq_straight_through_and_losses():
    lfq = LFQ(bits=5).train()
    z = torch.randn(2, 5, 3, 4, 4, requires_grad=True)
    q, ids, losses = lfq(z, entropy_weight=0.1)
    assert set(q.unique().tolist()) <= {-1.0, 1.0}
    torch.testing.assert_close(losses["commitment"], (z - torch.sign(z)).pow(2).mean())
    torch.testing.assert_close(losses["aux"], 0.1 * losses["entropy"] + 0.25 * losses["commitment"])
    (q * torch.arange(5.0).view(1, 5, 1, 1, 1)).sum().backward()
    torch.testing.assert_close(z.grad, torch.arange(5.0).view(1, 5, 1, 1, 1).expand_as(z))


@pytest.mark.parametrize("bits", [1, 4, 7])
def test_factorised_entropy_loss_matches_codebook_reference(bits):
    latent = (torch.randn(37, bits, dtype=torch.float64) * 0.02).requires_grad_()
    fast = lfq_entropy_loss(latent, diversity_gamma=0.7)
    ref = lfq_entropy_loss_ref(latent, diversity_gamma=0.7)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    (grad_fast,) = torch.autograd.grad(fast[0], latent)
    (grad_ref,) = torch.autograd.grad(ref[0], latent)
    torch.testing.assert_close(grad_fast, grad_ref, rtol=1e-5, atol=1e-7)  # gradients are O(1)


def test_every_parameter_gets_a_gradient():
    model = tiny().train()
    x = torch.randn(1, 1, 17, 16, 16)
    recon, tokens = model(x, entropy_weight=0.1)
    ((recon - x).abs().mean() + tokens.losses["aux"]).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_decode_ids_equals_decode_of_quantized():
    model = tiny()
    x = torch.randn(1, 1, 9, 16, 16)
    with torch.no_grad():
        tokens = model.tokenize(x)
        torch.testing.assert_close(model.decode_ids(tokens.ids), model.decode(tokens.quantized))
    with pytest.raises(ValueError, match="token ids"):
        model.decode_ids(torch.full((1, 2, 2, 2), 2**8))


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 1, 10, 16, 16), "depth"),
        ((1, 1, 9, 12, 16), "multiples of 8"),
        ((1, 2, 9, 16, 16), "expected a volume"),
        ((1, 9, 16, 16), "expected a volume"),
    ],
)
def test_bad_shapes_are_refused(shape, message):
    with pytest.raises(ValueError, match=message):
        tiny().encode(torch.randn(shape))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"temporal_downsample": (True,)}, "temporal_downsample"),
        ({"filters": 10}, "norm_groups"),
        ({"window_size": 6}, "window_size"),
        ({"token_bits": 0}, "token_bits"),
    ],
)
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(BTB3D_PRESETS["btb3d-tiny"], **changes)


def test_save_pretrained_round_trip(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "ckpt")
    loaded = BTB3D.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config and not loaded.training
    x = torch.randn(1, 1, 9, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), model.encode(x))
    assert isinstance(BTB3D.from_pretrained("btb3d-tiny").config, BTB3DConfig)
    with pytest.raises(CheckpointError, match="unknown model"):
        BTB3D.from_pretrained(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="not a BTB3D"):
        BTB3D.from_pretrained("mamba-tiny")


def _largest_encoder_activation(model: BTB3D, x: torch.Tensor, tiled: bool) -> int:
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel())) for m in model.encoder.modules()]
    with torch.no_grad():
        model.encode(x, tiled=tiled)
    for hook in hooks:
        hook.remove()
    return max(sizes)


def test_tiled_encoding_activations_do_not_grow_with_depth():
    # The structural reason for flat memory: no encoder activation is larger than one window's.
    model = tiny()
    short, long = torch.randn(1, 1, 17, 16, 16), torch.randn(1, 1, 65, 16, 16)
    assert _largest_encoder_activation(model, short, True) == _largest_encoder_activation(model, long, True)
    assert _largest_encoder_activation(model, long, False) > 3 * _largest_encoder_activation(model, long, True)
