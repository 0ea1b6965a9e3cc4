"""What `tts train` learns from (``--data.*``): the corpus, the batch size and the lengths of the items."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# A codec sees a short window of sound at a time; longer crops only cost memory (a batch holds them whole).
MAX_CROP_SECONDS = 60.0


@dataclass(kw_only=True)
class SpeechDataConfig:
    """The training data of a codec or a speech language model."""

    corpus: str | None = None
    """An audio corpus (a directory or ``.jsonl`` manifest: ours, LJSpeech or LibriTTS layout) or, for language
    models, a corpus encoded by ``tts encode`` (``.safetensors``). Required."""
    batch_size: int = 16
    """Utterances (or audio crops) per optimizer step."""
    max_seconds: float = 10.0
    """Language models see at most this much of each item (an utterance, or a pair of them)."""
    crop_seconds: float = 1.0
    """Codecs train on audio crops of this length (at most 60 s)."""
    pair_probability: float = 0.5
    """VALL-E 2 and CLaM-TTS: the share of items that are two utterances of one speaker in a row (the setting of
    prompted synthesis: the end of speech comes only after the second)."""
    language: Literal["auto", "en", "zh", "ja", "mix"] = "auto"
    """VALL-E X models (their released text front end): the transcripts' language; auto: langid's pick for each
    transcript."""

    def __post_init__(self):
        if self.corpus is not None and not Path(self.corpus).exists():
            raise ValueError(f"data.corpus: no such file or directory: {self.corpus}")
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")
        for name in ("max_seconds", "crop_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"data.{name} must be a positive number of seconds, got {value}")
        if self.crop_seconds > MAX_CROP_SECONDS:
            raise ValueError(f"data.crop_seconds must be at most {MAX_CROP_SECONDS:g}, got {self.crop_seconds}")
        if self.language not in ("auto", "en", "zh", "ja", "mix"):
            raise ValueError(f"data.language must be auto, en, zh, ja or mix; got {self.language!r}")
        if not 0.0 <= self.pair_probability <= 1.0:
            raise ValueError(f"data.pair_probability must lie in [0, 1], got {self.pair_probability}")
