"""IPA phonemes from espeak-ng (the front end most VALL-E implementations use), through its command line."""

from __future__ import annotations

import functools
import shutil
import subprocess

from longseq.core.io import InputError

ESPEAK = "espeak-ng"


def espeak_path() -> str:
    """The espeak-ng executable, or a one-line InputError saying how to install it."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise InputError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return path


@functools.lru_cache(maxsize=65536)
def phonemize(text: str, *, voice: str = "en-us") -> str:
    """IPA for ``text`` as espeak-ng speaks it with ``voice``: words separated by spaces, clauses by ", ".

    espeak-ng drops punctuation and prints one clause per line; the clause breaks are pauses, kept as ", ".
    Cached: a corpus repeats its sentences across speakers, and one espeak-ng run costs ~15 ms.
    """
    result = subprocess.run(
        [espeak_path(), "-q", "--ipa", "-v", voice, "--stdin"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise InputError(f"espeak-ng failed on the text with voice {voice!r}: {result.stderr.strip()}")
    clauses = [" ".join(line.split()) for line in result.stdout.splitlines()]
    return ", ".join(c for c in clauses if c)
