"""Offline speech measurements: mel-cepstral distortion with DTW, loop statistics.

MCD here: 80-band mel spectrum up to 8 kHz (1024-point FFT at 24 kHz, 10 ms hop, 80 dB floor below the loudest
band) -> cepstrum of its natural-log amplitude (DCT-II scaled as SPTK's mel-cepstra: log|H| = c0 + 2 sum c_k
cos(k w)) -> coefficients 1..24 (c0, the energy, left out); frames of silence (60 dB
below the loudest frame) dropped; the two cepstrum sequences aligned by DTW (Euclidean frame distance);
MCD = 10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2) averaged over the path. Values are comparable with each
other, not with SPTK mel-cepstrum MCDs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from longseq.speech.audio import resample

MCD_RATE = 24_000
# Up to 8 kHz, so that audio sampled at 16 kHz and up compares on equal terms.
MCD_MAX_HZ = 8_000
_MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)


def mel_cepstrum(wav: torch.Tensor, sample_rate: int, *, n_mels: int = 80, n_ceps: int = 25) -> np.ndarray:
    """(1, n) audio -> (frames, n_ceps - 1) mel cepstra of the non-silent frames."""
    import torchaudio.functional as AF

    wav = resample(wav.float().reshape(1, -1), sample_rate, MCD_RATE)
    n_fft, hop = 1024, 240
    spec = torch.stft(wav, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs().pow(2)[0]
    fbank = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, MCD_MAX_HZ, n_mels, MCD_RATE, "slaney", "slaney")
    mel = spec.T @ fbank  # (frames, n_mels)
    log_mel = mel.clamp_min(mel.max() * 1e-8 + 1e-20).log()  # an 80 dB floor below the loudest band
    energy_db = 10 * log_mel.exp().sum(-1).log10()
    log_mel = log_mel[energy_db > energy_db.max() - 60]
    # Cepstrum of the log-amplitude mel spectrum scaled as log|H| = c0 + 2 sum_k c_k cos(k w) (SPTK's
    # convention): the orthonormal DCT divided by sqrt(2 n_mels).
    dct = AF.create_dct(n_ceps, n_mels, "ortho") / math.sqrt(2 * n_mels)  # (n_mels, n_ceps)
    return (0.5 * log_mel @ dct)[:, 1:].double().numpy()


def dtw_path(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The minimum-cost monotonic alignment of an (n, m) cost matrix, steps (1,0), (0,1), (1,1).

    Row recursion D[i, j] = c[i, j] + min(D[i-1, j-1], D[i-1, j], D[i, j-1]) written as a prefix-min scan:
    with a_j = c[i, j] + min(D[i-1, j-1], D[i-1, j]) and C the cumulative sum of row i,
    D[i, j] = C_j + min_{k <= j} (a_k - C_k).
    """
    n, m = cost.shape
    acc = np.empty((n, m))
    acc[0] = np.cumsum(cost[0])
    for i in range(1, n):
        diagonal = np.concatenate([[np.inf], acc[i - 1, :-1]])
        a = cost[i] + np.minimum(diagonal, acc[i - 1])
        c = np.cumsum(cost[i])
        acc[i] = c + np.minimum.accumulate(a - c)
    i, j = n - 1, m - 1
    rows, cols = [i], [j]
    while i > 0 or j > 0:
        options = [
            (acc[i - 1, j - 1] if i and j else np.inf, i - 1, j - 1),
            (acc[i - 1, j] if i else np.inf, i - 1, j),
            (acc[i, j - 1] if j else np.inf, i, j - 1),
        ]
        _, i, j = min(options)
        rows.append(i)
        cols.append(j)
    return np.array(rows[::-1]), np.array(cols[::-1])


def mcd(reference: torch.Tensor, reference_rate: int, test: torch.Tensor, test_rate: int) -> float:
    """Mel-cepstral distortion (dB) between two utterances of the same text, DTW-aligned."""
    a, b = mel_cepstrum(reference, reference_rate), mel_cepstrum(test, test_rate)
    distance = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    rows, cols = dtw_path(distance)
    return float(_MCD_SCALE * distance[rows, cols].mean())


def longest_run(tokens: list[int]) -> int:
    """The longest stretch of one token repeated back to back."""
    best = run = 0
    previous = None
    for token in tokens:
        run = run + 1 if token == previous else 1
        previous = token
        best = max(best, run)
    return best


def loop_count(tokens: list[int], *, min_run: int = 8, max_period: int = 4) -> int:
    """Repeated-token runs: stretches where the sequence repeats itself with a period <= ``max_period`` for at
    least ``min_run`` tokens (a token held, or a short cycle such as a b a b ...)."""
    loops = 0
    i = 0
    while i < len(tokens):
        extent = 0
        for period in range(1, max_period + 1):
            j = i + period
            while j < len(tokens) and tokens[j] == tokens[j - period]:
                j += 1
            extent = max(extent, j - i)
        if extent >= min_run:
            loops += 1
            i += extent
        else:
            i += 1
    return loops
