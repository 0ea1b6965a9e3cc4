"""IPA phonemes from espeak-ng (the front end most VALL-E implementations use), through libespeak-ng."""

from __future__ import annotations

import functools

from longseq.speech.espeak_ng import phoneme_clauses


@functools.lru_cache(maxsize=65536)
def phonemize(text: str, *, voice: str = "en-us") -> str:
    """IPA for ``text`` as espeak-ng speaks it with ``voice``: words separated by spaces, clauses by ", ".

    espeak-ng drops punctuation and speaks clause by clause; the clause breaks are pauses, kept as ", ".
    Cached: a corpus repeats its sentences across speakers. Raises InputError for a voice espeak-ng lacks.
    """
    clauses = (" ".join(clause.split()) for clause in phoneme_clauses(text, voice))
    return ", ".join(c for c in clauses if c)
