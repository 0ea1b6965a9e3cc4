"""libespeak-ng from the ``espeakng-loader`` wheel (the library and its data, nothing from the system), via ctypes.

`phoneme_clauses` gives IPA phonemes (the text front end most VALL-E implementations use) and `synthesize` a voice's
waveform (for the corpus). Both run the library's synthesis, as the ``espeak-ng`` command line does: its ``--ipa``
output is traced there, after the clause-level stress pass that ``espeak_TextToPhonemes`` skips (the two disagree on
a stress mark in a few sentences in a hundred), and the bundled speech model was trained on the command line's output.

The library keeps one global state per process and is not thread-safe: every call holds `LOCK`, so threads run one
call at a time. Some of that state (the wave generator's phases and pitch flutter, the noise generator) carries
from one synthesis to the next and cannot be reset, so a waveform depends on what its process synthesized before;
the corpus speaks each voice in a fresh process. Phonemes do not depend on it.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

from longseq.core.io import InputError

LOCK = threading.Lock()
SAMPLE_RATE = 22_050  # espeak-ng's native rate

# Constants of espeak-ng's speak_lib.h.
_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: espeak_Synth returns when done; the samples go to our callback
_DONT_EXIT = 0x8000  # espeakINITIALIZE_DONT_EXIT: missing data is an error code, not exit() of the whole process
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # the pause after the last clause, which the command line adds too
_PHONEMES_IPA = 0x02
_RATE, _PITCH = 1, 3
_DEFAULT_RATE, _DEFAULT_PITCH = 175, 50  # the command line's (words per minute; 0-99)


class _VoiceSpec(ctypes.Structure):
    """espeak_VOICE; we fill in ``languages`` only."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


# What the callbacks collect during one espeak_Synth call (under LOCK).
_samples: list[bytes] = []
_clauses: list[str] = []


@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
def _on_samples(wav, count, events) -> int:
    if count > 0:
        _samples.append(ctypes.string_at(wav, 2 * count))
    return 0  # go on


@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p)
def _on_clause(phonemes) -> int:
    _clauses.append(phonemes.decode())
    return 0


_lib: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    """The library, loaded and initialized once per process."""
    global _lib
    if _lib is not None:
        return _lib
    try:
        import espeakng_loader
    except ImportError:
        message = "espeak-ng phonemes and voices need the espeakng-loader wheel: pip install 'longseq[speech]'"
        raise InputError(message) from None
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_VoiceSpec)]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [type(_on_samples)]
    lib.espeak_SetPhonemeCallback.argtypes = [type(_on_clause)]
    lib.espeak_SetPhonemeTrace.argtypes = [ctypes.c_int, ctypes.c_void_p]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    # The wheel's own data directory; the library looks nowhere else while it exists.
    rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), _DONT_EXIT)
    if rate != SAMPLE_RATE:
        raise InputError(f"libespeak-ng from espeakng-loader failed to start (espeak_Initialize returned {rate})")
    # espeak-ng 1.52 seeds its noise generator (breathy and Klatt voices) from the clock; fix it.
    lib.espeak_ng_SetRandSeed(0)
    lib.espeak_SetSynthCallback(_on_samples)
    # The IPA of each clause goes to _on_clause. The library also prints that trace to a C stream; it goes nowhere.
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    lib.espeak_SetPhonemeTrace(_PHONEMES_IPA, libc.fopen(os.devnull.encode(), b"w"))
    lib.espeak_SetPhonemeCallback(_on_clause)
    _lib = lib
    return lib


def _speak(text: str, voice: str, pitch: int, speed: int) -> None:
    """One espeak_Synth of ``text`` (callbacks fill `_samples` and `_clauses`); the caller holds LOCK."""
    lib = _library()
    # Like ``espeak-ng -v``: a voice file name ("en-us+f3"), else a language ("en-gb+f3").
    found = lib.espeak_SetVoiceByName(voice.encode()) == 0
    if not found and lib.espeak_SetVoiceByProperties(ctypes.byref(_VoiceSpec(languages=voice.encode()))) != 0:
        raise InputError(f"espeak-ng has no voice {voice!r} (e.g. en-us, en-gb, en-us+f3)")
    lib.espeak_SetParameter(_RATE, speed, 0)
    lib.espeak_SetParameter(_PITCH, pitch, 0)
    _samples.clear()
    _clauses.clear()
    data = text.encode()
    error = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
    if error != 0:
        raise InputError(f"espeak-ng failed to speak the text with voice {voice!r} (error {error:#x})")


def phoneme_clauses(text: str, voice: str = "en-us") -> list[str]:
    """The IPA of each clause of ``text`` as ``espeak-ng -q --ipa -v voice`` prints it: words separated by spaces,
    punctuation dropped, stress marked."""
    with LOCK:
        _speak(text, voice, _DEFAULT_PITCH, _DEFAULT_RATE)
        return list(_clauses)


def synthesize(text: str, voice: str, *, pitch: int, speed: int) -> np.ndarray:
    """``text`` spoken by ``voice`` (e.g. "en-gb+f3") at ``pitch`` (0-99) and ``speed`` (words per minute): int16
    samples at `SAMPLE_RATE`. The first call in a process gives what ``espeak-ng -v voice -p pitch -s speed -w out.wav``
    writes; later ones depend on the calls before (see above)."""
    with LOCK:
        _speak(text, voice, pitch, speed)
        return np.frombuffer(b"".join(_samples), dtype=np.int16).copy()
