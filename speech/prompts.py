"""Voice prompts: a short recording of a voice as codec codes, with its transcript as the model's text ids.

A prompt is made once (`make_prompt`, ``tts prompt``) and reused by every synthesis in that voice
(``tts synth --prompt``). Saved as ``.npz`` in the layout of VALL-E X's presets (Plachtaa/VALL-E-X
``make_prompt``), so that its preset files load too:

- ``audio_tokens`` (1, T, n_q) codec codes, frames first;
- ``text_tokens`` (1, L) the transcript's ids (`VallexTokenizer.encode_prompt`);
- ``lang_code`` () the transcript's language as VALL-E X numbers prompts (zh 0, ja 1, en 2).

Loading uses ``numpy.load(allow_pickle=False)``: nothing in the file runs.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from longseq.core.io import InputError
from longseq.speech.audio import check_prompt, load_audio
from longseq.speech.codecs import Codec
from longseq.speech.text.vallex import LANGUAGE_IDS, PROMPT_LANGUAGE_CODES, VallexTokenizer

MIN_SECONDS = 1.0
MAX_SECONDS = 15.0
_LANGUAGE_OF_CODE = {code: language for language, code in PROMPT_LANGUAGE_CODES.items()}


@dataclass(kw_only=True)
class VoicePrompt:
    """codes (1, n_q, T); text_ids (L,) the transcript's ids; language: the transcript's (en, zh, ja)."""

    codes: torch.Tensor
    text_ids: list[int]
    language: str

    @property
    def language_ids(self) -> list[int]:
        """The model's language row for every transcript token (VALL-E X gives the prompt one language)."""
        return [LANGUAGE_IDS[self.language]] * len(self.text_ids)

    def save(self, path: str | os.PathLike) -> None:
        """Write the ``.npz`` (to a temporary path of `atomic_output`: ``numpy`` would add a suffix to others)."""
        with open(path, "wb") as f:
            np.savez(
                f,
                audio_tokens=self.codes.transpose(1, 2).cpu().numpy().astype(np.int64),
                text_tokens=np.asarray([self.text_ids], dtype=np.int64),
                lang_code=np.asarray(PROMPT_LANGUAGE_CODES[self.language], dtype=np.int64),
            )

    @classmethod
    def load(cls, path: str | os.PathLike, *, n_codebooks: int, codebook_size: int) -> VoicePrompt:
        """A saved prompt (ours or a VALL-E X preset); anything else is a one-line InputError."""
        if not Path(path).is_file():
            raise InputError(f"voice prompt not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                codes, text, code = data["audio_tokens"], data["text_tokens"], int(data["lang_code"])
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
            message = f"{path} is not a voice prompt (.npz with audio_tokens, text_tokens, lang_code): {err}"
            raise InputError(message) from None
        if codes.ndim != 3 or codes.shape[0] != 1 or codes.shape[2] < n_codebooks or text.ndim != 2:
            raise InputError(
                f"{path}: audio_tokens must be (1, frames, >= {n_codebooks}) and text_tokens (1, L); got "
                f"{codes.shape} and {text.shape}"
            )
        if codes.size and (codes.min() < 0 or codes.max() >= codebook_size) or code not in _LANGUAGE_OF_CODE:
            raise InputError(f"{path}: codes outside [0, {codebook_size}) or an unknown lang_code {code}")
        tensor = torch.from_numpy(codes.astype(np.int64)).transpose(1, 2)[:, :n_codebooks]
        ids = text[0].astype(np.int64).tolist()
        return cls(codes=tensor.contiguous(), text_ids=ids, language=_LANGUAGE_OF_CODE[code])


def prompt_codes(codec: Codec, path: str | os.PathLike, n_codebooks: int, *, max_seconds: float) -> torch.Tensor:
    """A voice recording -> codes (1, n_codebooks, t); refuses non-audio, silence, under 1 s or over
    ``max_seconds``."""
    rate = codec.sample_rate
    wav = check_prompt(load_audio(path, rate), rate, min_seconds=MIN_SECONDS, source=str(path))
    seconds = wav.shape[-1] / codec.sample_rate
    if seconds > max_seconds:
        raise InputError(f"prompt {path} is {seconds:.1f} s long; use at most {max_seconds:g} s (about 3 s works best)")
    device = next(codec.parameters()).device
    return codec.encode(wav.to(device))[:, :n_codebooks]


def make_prompt(
    codec: Codec, tokenizer: VallexTokenizer, audio: str | os.PathLike, transcript: str, *, n_codebooks: int
) -> VoicePrompt:
    """A recording (1-15 s) and its transcript -> a `VoicePrompt` (``make_prompt`` of VALL-E X: the
    transcript's language is langid's pick)."""
    encoded = tokenizer.encode_prompt(transcript)
    codes = prompt_codes(codec, audio, n_codebooks, max_seconds=MAX_SECONDS)
    return VoicePrompt(codes=codes, text_ids=encoded.ids, language=encoded.language)
