import pytest
import torch

from longseq.vision.local_mamba.scans import (
    ALL_DIRECTIONS,
    CROSS,
    multi_scan,
    multi_unscan,
    parse_direction,
    scan,
    scan_length,
    scan_order,
    scan_ref,
    unscan,
    unscan_ref,
)

GRIDS = [(4, 4), (3, 3), (5, 7), (7, 5), (1, 9), (14, 14), (9, 16), (2, 1)]


def test_golden_orders_on_4x4():
    """The worked 4x4 example computed from the released code's reshapes (anchors/vision.md 1.2)."""
    assert scan_order("h", 4, 4) == tuple(range(16))
    assert scan_order("h_flip", 4, 4) == tuple(range(15, -1, -1))
    assert scan_order("v", 4, 4) == (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)
    assert scan_order("v_flip", 4, 4) == (15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0)
    assert scan_order("w2", 4, 4) == (0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15)
    assert scan_order("w2_flip", 4, 4) == (15, 14, 11, 10, 13, 12, 9, 8, 7, 6, 3, 2, 5, 4, 1, 0)


def test_window_padding_is_part_of_the_sequence():
    assert scan_order("w2", 3, 3) == (0, 1, 3, 4, 2, -1, 5, -1, 6, 7, -1, -1, 8, -1, -1, -1)
    # w7 on a 4x4 grid: one padded 7x7 window, 33 of its 49 positions are zeros
    order = scan_order("w7", 4, 4)
    assert len(order) == 49 and order.count(-1) == 33
    assert scan_length("w7", 4, 4) == 49 and scan_length("w2", 7, 7) == 64 and scan_length("v", 5, 3) == 15


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("direction", ALL_DIRECTIONS)
def test_fast_scan_matches_reference_and_inverts(direction, grid):
    h, w = grid
    x = torch.randn(2, h * w, 5)
    y = scan(x, direction, grid)
    torch.testing.assert_close(y, scan_ref(x, direction, grid), rtol=0, atol=0)
    assert y.shape == (2, scan_length(direction, h, w), 5)
    torch.testing.assert_close(unscan(y, direction, grid), x, rtol=0, atol=0)
    torch.testing.assert_close(unscan_ref(y, direction, grid), x, rtol=0, atol=0)
    # each token appears exactly once in the sequence, padding is zero
    order = torch.tensor(scan_order(direction, h, w))
    assert sorted(order[order >= 0].tolist()) == list(range(h * w))
    assert (y[:, order < 0] == 0).all()


@pytest.mark.parametrize("grid", [(3, 5), (5, 3), (2, 7)])
def test_upstream_v_reverse_is_wrong_on_non_square_grids(grid):
    """The released reverse of `v` reuses the forward rearrange; that is not the inverse when h != w."""
    h, w = grid
    x = torch.randn(1, h * w, 2)
    y = scan(x, "v", grid)
    upstream = y.view(1, h, w, 2).transpose(1, 2).reshape(1, h * w, 2)  # 'b (h w) d -> b (w h) d'
    assert not torch.equal(upstream, x)
    assert torch.equal(unscan(y, "v", grid), x)


def test_square_grid_upstream_v_reverse_agrees():
    x = torch.randn(1, 16, 2)
    y = scan(x, "v", (4, 4))
    assert torch.equal(y.view(1, 4, 4, 2).transpose(1, 2).reshape(1, 16, 2), x)


@pytest.mark.parametrize("grid", [(4, 4), (3, 5), (6, 2)])
def test_multi_scan_with_middle_class_token(grid):
    """The class token stays out of the 2D scan and sits at the same index of every sequence."""
    h, w = grid
    c = h * w // 2
    directions = ("h", "v_flip", "w2", "w7_flip")
    x = torch.randn(2, h * w + 1, 3)
    patches = torch.cat([x[:, :c], x[:, c + 1 :]], dim=1)
    y = multi_scan(x, directions, grid, cls_position=c)
    s = max(scan_length(d, h, w) for d in directions) + 1
    assert y.shape == (2, 4, s, 3)
    for k, direction in enumerate(directions):
        expected = scan(patches, direction, grid)
        n = expected.shape[1]
        torch.testing.assert_close(y[:, k, c], x[:, c], rtol=0, atol=0)
        torch.testing.assert_close(torch.cat([y[:, k, :c], y[:, k, c + 1 : n + 1]], dim=1), expected, rtol=0, atol=0)
        assert (y[:, k, n + 1 :] == 0).all()
    back = multi_unscan(y, directions, grid, cls_position=c)
    torch.testing.assert_close(back, x[:, None].expand(-1, 4, -1, -1), rtol=0, atol=0)


def test_cross_scan_merge_is_vmamba_formula():
    """VMamba: y = y0 + flip(y2) + transpose_back(y1) + transpose_back(flip(y3)), with K = [h, v, h_flip, v_flip]."""
    h, w = 3, 5
    x = torch.randn(2, h * w, 4)
    ys = multi_scan(x, CROSS, (h, w)) * torch.randn(1, 4, 1, 4)  # any per-direction change
    ours = multi_unscan(ys, CROSS, (h, w)).sum(1)

    def transpose_back(y):  # (b, w*h, d) in column-major order -> row-major
        return y.view(2, w, h, 4).transpose(1, 2).reshape(2, h * w, 4)

    vmamba = ys[:, 0] + ys[:, 2].flip(1) + transpose_back(ys[:, 1]) + transpose_back(ys[:, 3].flip(1))
    torch.testing.assert_close(ours, vmamba)


def test_gradients_flow_through_scan_and_inverse():
    x = torch.randn(1, 12, 3, requires_grad=True)
    y = multi_scan(x, ALL_DIRECTIONS, (3, 4))
    multi_unscan(y * 2, ALL_DIRECTIONS, (3, 4)).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0 * len(ALL_DIRECTIONS)))


def test_bad_directions_and_shapes():
    with pytest.raises(ValueError, match="unknown scan direction"):
        parse_direction("diag")
    with pytest.raises(ValueError, match="unknown scan direction"):
        multi_scan(torch.randn(1, 4, 2), ("h", "w0"), (2, 2))
    with pytest.raises(ValueError, match="tokens"):
        multi_scan(torch.randn(1, 5, 2), ("h",), (2, 2))
    assert parse_direction("w7_flip") == ("w", 7, True)


def test_plans_made_under_inference_mode_still_serve_autograd():
    x = torch.randn(1, 6, 2)
    with torch.inference_mode():
        multi_scan(x, ("w2", "v_flip"), (2, 3))
    x.requires_grad_()
    multi_unscan(multi_scan(x, ("w2", "v_flip"), (2, 3)), ("w2", "v_flip"), (2, 3)).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0))
