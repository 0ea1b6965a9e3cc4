import itertools

import numpy as np
import torch

from longseq.speech.eval import dtw_path, longest_run, loop_count, mcd


def brute_force_dtw_cost(cost: np.ndarray) -> float:
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i, j in itertools.product(range(1, n + 1), range(1, m + 1)):
        acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    return acc[n, m]


def test_dtw_path_is_optimal_and_monotonic():
    rng = np.random.default_rng(0)
    for n, m in [(1, 1), (1, 5), (6, 1), (7, 9), (12, 5)]:
        cost = rng.random((n, m))
        rows, cols = dtw_path(cost)
        assert (rows[0], cols[0], rows[-1], cols[-1]) == (0, 0, n - 1, m - 1)
        steps = set(zip(np.diff(rows), np.diff(cols)))
        assert steps <= {(0, 1), (1, 0), (1, 1)}
        np.testing.assert_allclose(cost[rows, cols].sum(), brute_force_dtw_cost(cost))


def speechlike(seconds: float, f0: float, rate: int = 24_000, seed: int = 0) -> torch.Tensor:
    """A harmonic tone with a moving formant-like envelope and a little noise."""
    t = torch.arange(int(seconds * rate)) / rate
    gen = torch.Generator().manual_seed(seed)
    wave = sum(torch.sin(2 * torch.pi * f0 * k * t) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t)
    return (0.1 * wave * envelope + 0.005 * torch.randn(t.shape, generator=gen)).unsqueeze(0)


def test_mcd_zero_for_identity_small_for_stretch_large_for_other_signal():
    ref = speechlike(1.0, 150.0)
    assert mcd(ref, 24_000, ref, 24_000) < 1e-6
    slower = torch.nn.functional.interpolate(ref.unsqueeze(0), scale_factor=1.15, mode="linear")[0]
    other = speechlike(1.0, 310.0, seed=1)
    close, far = mcd(ref, 24_000, slower, 24_000), mcd(ref, 24_000, other, 24_000)
    assert close < far / 2
    # Rate differences are resampled away.
    import torchaudio.functional as AF

    assert mcd(ref, 24_000, AF.resample(ref, 24_000, 16_000), 16_000) < close


def test_loop_statistics():
    assert longest_run([1, 2, 2, 2, 3]) == 3 and longest_run([]) == 0
    assert loop_count([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == 0
    assert loop_count([1] * 9 + [2, 3]) == 1
    assert loop_count([4, 5] * 6 + [1, 2, 3] + [7] * 8) == 2
    assert loop_count([1, 2, 3] * 2, min_run=4) == 1 and loop_count([1, 2, 3] * 2, min_run=4, max_period=2) == 0
