import math

import numpy as np
import pytest
import soundfile as sf
import torch

from longseq.core.io import InputError
from longseq.speech.audio import check_prompt, load_audio, save_audio


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.5 * np.sin(2 * math.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def dominant_frequency(wav: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(wav.reshape(-1)).abs()
    return spectrum.argmax().item() * rate / wav.shape[-1]


def test_load_resamples_and_keeps_pitch(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(1.0, 44_100), 44_100)
    wav = load_audio(path, 24_000)
    assert wav.shape == (1, 24_000)
    assert abs(dominant_frequency(wav, 24_000) - 440.0) < 2.0


def test_load_downmixes_stereo(tmp_path):
    path = tmp_path / "s.flac"
    left_right = np.stack([tone(0.5, 24_000, 300.0), np.zeros(12_000, np.float32)], axis=1)
    sf.write(path, left_right, 24_000)
    wav = load_audio(path, 24_000)
    assert wav.shape == (1, 12_000)
    torch.testing.assert_close(wav[0], torch.from_numpy(left_right.mean(1)), atol=1e-4, rtol=0)


@pytest.mark.parametrize("content", [b"", b"this is not audio at all" * 10])
def test_load_refuses_non_audio(tmp_path, content):
    path = tmp_path / "x.wav"
    path.write_bytes(content)
    with pytest.raises(InputError, match="not an audio file"):
        load_audio(path, 24_000)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["everywhere", "one sample"])
def test_load_refuses_non_finite_samples(tmp_path, bad, where):
    samples = np.full(2400, bad) if where == "everywhere" else np.where(np.arange(2400) == 7, bad, tone(0.1, 24_000))
    path = tmp_path / "x.wav"
    sf.write(path, samples.astype(np.float32), 24_000, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN or infinite samples"):
        load_audio(path, 24_000)


def test_load_refuses_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_audio(tmp_path / "nope.wav", 24_000)


def test_check_prompt_refuses_short_and_silent():
    rate = 24_000
    speechlike = torch.from_numpy(tone(3.0, rate)).unsqueeze(0)
    assert check_prompt(speechlike, rate, min_seconds=1.0, source="p") is speechlike
    with pytest.raises(InputError, match="at least 1 s"):
        check_prompt(speechlike[:, : rate // 2], rate, min_seconds=1.0, source="p")
    with pytest.raises(InputError, match="silent"):
        check_prompt(torch.zeros(1, 3 * rate), rate, min_seconds=1.0, source="p")


def test_save_audio_round_trip_and_atomic(tmp_path):
    wav = torch.from_numpy(tone(0.25, 24_000)).unsqueeze(0)
    out = save_audio(tmp_path / "o.wav", wav, 24_000)
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (24_000, 1, "PCM_16")
    torch.testing.assert_close(load_audio(out, 24_000), wav, atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="does not exist"):
        save_audio(tmp_path / "missing" / "o.wav", wav, 24_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.wav"]
