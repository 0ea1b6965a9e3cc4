"""Rotary embeddings: the rotation against a complex-number formulation, relative positions, offsets."""

import pytest
import torch

from longseq.core.rotary import RotaryEmbedding, rotate


def rotate_complex(x: torch.Tensor, positions: torch.Tensor, dim: int, base: float, interleaved: bool):
    """Second formulation: pairs of features as complex numbers multiplied by exp(i t theta), in float64."""
    x = x.double()
    half = dim // 2
    theta = base ** (-torch.arange(half, dtype=torch.float64) * 2 / dim)
    phase = torch.polar(torch.ones(len(positions), half, dtype=torch.float64), positions.double()[:, None] * theta)
    rot, rest = x[..., :dim], x[..., dim:]
    if interleaved:
        z = torch.complex(rot[..., 0::2], rot[..., 1::2])
    else:
        z = torch.complex(rot[..., :half], rot[..., half:])
    z = z * phase[None, :, None, :]
    if interleaved:
        out = torch.stack((z.real, z.imag), dim=-1).flatten(-2)
    else:
        out = torch.cat((z.real, z.imag), dim=-1)
    return torch.cat((out, rest), dim=-1)


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("dim", [8, 16])
def test_rotation_matches_complex_formulation(interleaved, dim):
    rope = RotaryEmbedding(dim, base=500.0, interleaved=interleaved)
    q, k = torch.randn(2, 11, 3, 16), torch.randn(2, 11, 1, 16)
    offset = 5
    q_rot, k_rot = rope(q, k, offset=offset)
    positions = torch.arange(offset, offset + 11)
    torch.testing.assert_close(q_rot, rotate_complex(q, positions, dim, 500.0, interleaved).float())
    torch.testing.assert_close(k_rot, rotate_complex(k, positions, dim, 500.0, interleaved).float())
    if dim < 16:  # partial rotary leaves the tail alone
        assert torch.equal(q_rot[..., dim:], q[..., dim:])


def test_scores_depend_only_on_relative_position():
    rope = RotaryEmbedding(8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    q3, _ = rope(q, k, offset=3)
    _, k1 = rope(q, k, offset=1)
    q40, _ = rope(q, k, offset=40)
    _, k38 = rope(q, k, offset=38)
    torch.testing.assert_close((q3 * k1).sum(), (q40 * k38).sum())


def test_offset_equals_slice_of_longer_sequence():
    rope = RotaryEmbedding(8)
    q, k = torch.randn(2, 300, 2, 8), torch.randn(2, 300, 2, 8)
    full_q, full_k = rope(q, k)
    part_q, part_k = rope(q[:, 290:], k[:, 290:], offset=290)
    torch.testing.assert_close(part_q, full_q[:, 290:])
    torch.testing.assert_close(part_k, full_k[:, 290:])


def test_keeps_dtype():
    cos, sin = torch.ones(4, 2), torch.zeros(4, 2)
    x = torch.randn(1, 4, 2, 6, dtype=torch.bfloat16)
    assert torch.equal(rotate(x, cos, sin), x)


@pytest.mark.parametrize("dim", [0, 7])
def test_rejects_bad_dim(dim):
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(dim)
