"""Long-form speech continuation with SpeechSSM: minutes of audio in constant memory, streamed to a WAV file.

The model emits one frame per step from a fixed-size state. Frames are decoded by the codec in windows of
``window_seconds`` that start every ``window_seconds - overlap_seconds``; each window is decoded on its own and
the overlapping frames of consecutive windows are cross-faded (SpeechSSM's 30-s windows with 4-s overlap).
Decoded audio goes straight to the output file, so nothing grows with the duration: the model state, one
window of frames and one overlap of audio are all that is held.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from longseq.core.io import InputError, atomic_output
from longseq.speech.audio import check_prompt, load_audio
from longseq.speech.codecs import Codec
from longseq.speech.models.sampling import SamplingConfig
from longseq.speech.models.speechssm import SpeechSSM

MAX_MINUTES = 60.0
MIN_PROMPT_SECONDS = 1.0


@dataclass(kw_only=True)
class LongForm:
    seconds: float  # audio written
    frames: int  # codec frames generated
    windows: int  # codec windows decoded
    elapsed: float  # seconds of compute

    @property
    def rtf(self) -> float:
        """Real-time factor: compute time / audio duration."""
        return self.elapsed / self.seconds if self.seconds > 0 else math.inf


class WindowedDecoder:
    """Frames in, waveform out: windows of ``window`` frames every ``window - overlap`` frames, each decoded on
    its own by ``codec``; the ``overlap`` frames two windows share are cross-faded linearly.

    `push` a frame (k,) and get back the audio that became final (possibly none); `flush` at the end. The
    output has exactly frames x samples-per-frame samples.
    """

    def __init__(self, codec: Codec, *, window: int, overlap: int):
        if not 0 <= overlap < window / 2:
            raise ValueError(f"overlap ({overlap}) must lie in [0, window / 2) for a window of {window} frames")
        self.codec, self.window, self.overlap = codec, window, overlap
        self.frames: list[torch.Tensor] = []
        self.tail: torch.Tensor | None = None  # decoded audio of the frames kept for the next window
        self.windows = 0
        spf = codec.samples_per_frame
        self.fade = torch.linspace(0.0, 1.0, overlap * spf + 2)[1:-1]

    def _decode(self) -> torch.Tensor:
        codes = torch.stack(self.frames, dim=-1)[None]  # (1, k, n)
        self.windows += 1
        return self.codec.decode(codes)[0, 0].cpu()

    def _join(self, wav: torch.Tensor) -> torch.Tensor:
        """Cross-fade the head of a new window into the kept tail of the previous one."""
        if self.tail is None:
            return wav
        n = len(self.fade)
        head = self.tail * (1 - self.fade) + wav[:n] * self.fade
        return torch.cat([head, wav[n:]])

    def push(self, frame: torch.Tensor) -> torch.Tensor:
        self.frames.append(frame)
        if len(self.frames) < self.window:
            return torch.zeros(0)
        wav = self._join(self._decode())
        keep = self.overlap * self.codec.samples_per_frame
        ready, self.tail = (wav[: len(wav) - keep], wav[len(wav) - keep :]) if keep else (wav, None)
        self.frames = self.frames[len(self.frames) - self.overlap :] if self.overlap else []
        return ready

    def flush(self) -> torch.Tensor:
        if len(self.frames) > (self.overlap if self.tail is not None else 0):
            return self._join(self._decode())
        return self.tail if self.tail is not None else torch.zeros(0)


def encode_long_prompt(codec: Codec, path: str | os.PathLike, model: SpeechSSM, device="cpu") -> torch.Tensor:
    """A voice prompt file -> codes (1, k, t); it must fit in one codec window (it is tokenized in one piece)."""
    wav = check_prompt(
        load_audio(path, codec.sample_rate), codec.sample_rate, min_seconds=MIN_PROMPT_SECONDS, source=str(path)
    )
    seconds = wav.shape[-1] / codec.sample_rate
    window = model.config.window_seconds
    if seconds > window:
        raise InputError(f"prompt {path} is {seconds:.1f} s long, more than the model's {window:g}-s window")
    return codec.encode(wav.to(device))[:, : model.config.n_codebooks]


def check_minutes(minutes: float) -> None:
    if not 0 < minutes <= MAX_MINUTES:
        raise InputError(f"--minutes must lie in (0, {MAX_MINUTES:g}]; got {minutes:g}")


@torch.no_grad()
def continue_speech(
    model: SpeechSSM,
    codec: Codec,
    output: str | os.PathLike,
    *,
    minutes: float,
    prompt: torch.Tensor | None = None,
    sampling: SamplingConfig | None = None,
    seed: int | None = None,
    progress: bool = True,
    on_frame: Callable[[torch.Tensor], None] | None = None,
) -> LongForm:
    """Continue the prompt codes (1, k, t) (or start from nothing) for ``minutes`` and write a 16-bit WAV.

    ``on_frame`` sees every generated frame's codes (k,) (for statistics). The file appears only when complete.
    """
    check_minutes(minutes)
    c = model.config
    device = next(model.parameters()).device
    n_frames = round(minutes * 60 * codec.frame_rate)
    decoder = WindowedDecoder(
        codec,
        window=round(c.window_seconds * codec.frame_rate),
        overlap=round(c.overlap_seconds * codec.frame_rate),
    )
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.randint(2**31, ())))
    start = time.perf_counter()
    samples = 0
    with atomic_output(output) as tmp, sf.SoundFile(tmp, "w", codec.sample_rate, 1, "PCM_16", format="WAV") as f:

        def write(wav: torch.Tensor) -> None:
            nonlocal samples
            f.write(np.ascontiguousarray(wav.clamp(-1.0, 1.0).numpy()))
            samples += len(wav)

        frames = model.stream(prompt, n_frames=n_frames, sampling=sampling or SamplingConfig(), generator=generator)
        for frame in tqdm(frames, total=n_frames, desc="frames", unit="frame", disable=not progress, mininterval=1):
            if on_frame is not None:
                on_frame(frame)
            write(decoder.push(frame))
        write(decoder.flush())
    return LongForm(
        seconds=samples / codec.sample_rate,
        frames=n_frames,
        windows=decoder.windows,
        elapsed=time.perf_counter() - start,
    )


def synth_minutes(
    model_dir: str | os.PathLike | None,
    output: str,
    minutes: float,
    *,
    text: str | None,
    text_file: str | None,
    prompt_audio: str | None,
    prompt_text: str | None,
    seed: int | None,
    device: str,
    sampling: SamplingConfig,
    sample_rate: int | None,
    spectrogram: str | None,
    codec_weights: str | None,
) -> None:
    """`tts synth --minutes`: check the flags, load the SpeechSSM model and its codec, stream the continuation."""
    from longseq.speech.synthesis import load_model_and_codec

    check_minutes(minutes)
    unused = {
        "--text-file": text_file,
        "--text": text,
        "--prompt-text": prompt_text,
        "--sample-rate": sample_rate,
        "--spectrogram": spectrogram,
    }
    given = [flag for flag, value in unused.items() if value is not None]
    if given:
        raise InputError(f"--minutes continues the prompt's speech and streams it at the codec's rate; drop {given[0]}")
    lm, codec = load_model_and_codec(model_dir, codec_weights=codec_weights, device=device)
    if not isinstance(lm, SpeechSSM):
        raise InputError(f"--minutes needs a SpeechSSM model; {model_dir} holds a {type(lm).__name__}")
    prompt = None if prompt_audio is None else encode_long_prompt(codec, prompt_audio, lm, device)
    result = continue_speech(lm, codec, output, minutes=minutes, prompt=prompt, sampling=sampling, seed=seed)
    seconds = f"{result.seconds:.2f} s of audio in {result.elapsed:.2f} s"
    print(f"wrote {output}: {seconds} (real-time factor {result.rtf:.2f}, {result.windows} codec windows)")
