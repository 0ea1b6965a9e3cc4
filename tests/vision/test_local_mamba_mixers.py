import pytest
import torch

from longseq.vision.local_mamba.mixers import MultiScan, MultiScanMamba, MultiScanSS2D, check_directions
from longseq.vision.local_mamba.reference import multi_scan_mamba_ref, multi_scan_ss2d_ref
from longseq.vision.local_mamba.scans import ALL_DIRECTIONS, CROSS


def _perturb(module: torch.nn.Module) -> None:
    """Move every parameter off its init (A_log, D, dt bias are structured) so swaps would show."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))


def _grads(module, x):
    return [x.grad] + [p.grad for p in module.parameters()]


def _compare(module, fast, ref, x):
    x1 = x.clone().requires_grad_()
    y1 = fast(x1)
    g = torch.randn_like(y1)
    y1.backward(g)
    fast_grads = _grads(module, x1)
    module.zero_grad()
    x2 = x.clone().requires_grad_()
    y2 = ref(x2)
    y2.backward(g)
    ref_grads = _grads(module, x2)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    for a, b in zip(fast_grads, ref_grads):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("grid", "directions", "cls"),
    [
        ((4, 4), ("h", "v_flip", "w7", "w7_flip"), None),
        ((3, 5), ("h_flip", "v", "w2", "w2_flip"), None),
        ((3, 5), ("v", "v_flip", "w2", "w7"), 7),
        ((2, 3), None, 3),
    ],
)
def test_multi_scan_mamba_matches_per_direction_reference(grid, directions, cls):
    mixer = MultiScanMamba(16, directions=directions, d_state=4)
    _perturb(mixer)
    l = grid[0] * grid[1] + (cls is not None)
    x = torch.randn(2, l, 16)
    _compare(mixer, lambda t: mixer(t, grid, cls), lambda t: multi_scan_mamba_ref(mixer, t, grid, cls), x)


@pytest.mark.parametrize(("grid", "directions"), [((4, 4), ("h", "h_flip", "w7", "w7_flip")), ((3, 5), CROSS)])
def test_multi_scan_ss2d_matches_per_direction_reference(grid, directions):
    mixer = MultiScanSS2D(8, directions=directions, d_state=4)
    _perturb(mixer)
    x = torch.randn(2, *grid, 8)
    _compare(mixer, mixer, lambda t: multi_scan_ss2d_ref(mixer, t), x)


def test_ss2d_search_supernet_matches_reference():
    mixer = MultiScanSS2D(8, directions=None, d_state=4)
    _perturb(mixer)
    assert mixer.x_proj_weight.shape[0] == 8 and mixer.A_logs.shape[0] == 8 * 16
    _compare(mixer, mixer, lambda t: multi_scan_ss2d_ref(mixer, t), torch.randn(1, 3, 2, 8))


def test_per_direction_parameters_are_independent_tensors():
    mixer = MultiScanMamba(16, directions=("h", "v", "w2", "w7"))
    pointers = {getattr(mixer, f"A_log_{k}").data_ptr() for k in range(4)}
    assert len(pointers) == 4
    assert mixer.A_log_0._no_weight_decay and mixer.D_3._no_weight_decay
    names = {n for n, _ in mixer.named_parameters()}
    assert {
        "conv1d_3.weight",
        "x_proj_3.weight",
        "dt_proj_3.bias",
        "A_log_3",
        "D_3",
        "attn.channel_select.weight",
    } <= names


def test_search_merge_is_softmax_of_layer_normed_branches():
    merge = MultiScan(6, None)
    with torch.no_grad():
        merge.weights.copy_(torch.randn(8, 1, 1, 1))
    ys = torch.randn(2, 8, 5, 6)
    probs = merge.probabilities()
    expected = sum(probs[i] * torch.nn.functional.layer_norm(ys[:, i], (6,)) for i in range(8))
    torch.testing.assert_close(merge(ys), expected)
    assert merge.directions == ALL_DIRECTIONS


def test_direction_lists_are_validated():
    with pytest.raises(ValueError, match="unknown scan direction"):
        check_directions(["h", "diagonal"])
    with pytest.raises(ValueError, match="repeated"):
        check_directions(["h", "h"])
    with pytest.raises(ValueError, match="at least one"):
        check_directions([])
    with pytest.raises(ValueError, match="supernet"):
        MultiScan(4, ["h"]).probabilities()
