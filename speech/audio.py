"""Audio I/O through soundfile (torchaudio >= 2.9 needs FFmpeg for load/save), resampling, prompt checks.

Waveforms are float32 tensors (c, n) in [-1, 1]; after `load_audio` they are mono (1, n) at the rate asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from longseq.core.io import InputError, atomic_output

# A prompt whose RMS is below -60 dBFS carries no voice to clone.
SILENCE_RMS = 1e-3


def resample(wav: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """(..., n) at ``orig_rate`` -> (..., n') at ``new_rate`` (band-limited sinc interpolation)."""
    if orig_rate == new_rate:
        return wav
    import torchaudio.functional as AF

    return AF.resample(wav, orig_rate, new_rate)


def load_audio(path: str | os.PathLike, sample_rate: int) -> torch.Tensor:
    """Read an audio file as mono float32 (1, n) at ``sample_rate``: stereo is averaged, other rates resampled.

    Raises:
        InputError: the file is missing, not audio soundfile can read, empty, or holds NaN or infinite samples
            (a float WAV can; they would pass through a codec as noise or silence).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file not found: {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path} is not an audio file soundfile can read ({first})") from None
    if data.shape[0] == 0:
        raise InputError(f"{path} holds no audio samples")
    if not np.isfinite(data).all():
        raise InputError(f"{path} holds NaN or infinite samples; it is not usable audio")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    wav = torch.from_numpy(np.ascontiguousarray(mono)).unsqueeze(0)
    return resample(wav, rate, sample_rate)


def check_prompt(wav: torch.Tensor, sample_rate: int, *, min_seconds: float, source: str) -> torch.Tensor:
    """Refuse a voice prompt (1, n) that is too short or silent; return it unchanged otherwise."""
    seconds = wav.shape[-1] / sample_rate
    if seconds < min_seconds:
        raise InputError(f"prompt {source} is {seconds:.2f} s long; a voice prompt needs at least {min_seconds:g} s")
    rms = wav.float().pow(2).mean().sqrt().item()
    if rms < SILENCE_RMS:
        raise InputError(f"prompt {source} is silent (RMS {rms:.1e}); record or choose a prompt with speech in it")
    return wav


def write_audio(path: str | os.PathLike, wav: torch.Tensor, sample_rate: int) -> None:
    """Write (1, n) or (n,) float audio as 16-bit PCM WAV to ``path`` (a temporary path of `atomic_output`)."""
    samples = wav.detach().float().cpu().reshape(-1).clamp(-1.0, 1.0).numpy()
    sf.write(str(path), samples, sample_rate, subtype="PCM_16", format="WAV")


def save_audio(path: str | os.PathLike, wav: torch.Tensor, sample_rate: int) -> Path:
    """`write_audio`, atomically (a failure leaves no file)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        write_audio(tmp, wav, sample_rate)
    return path
