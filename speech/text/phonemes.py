"""IPA phonemes from espeak-ng (the front end most VALL-E implementations use), through its command line."""

from __future__ import annotations

import shutil
import subprocess

from core.io import InputError

ESPEAK = "espeak-ng"


def espeak_path() -> str:
    """The espeak-ng executable, or a one-line InputError saying how to install it."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise InputError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return path


def phonemize(text: str, *, voice: str = "en-us") -> str:
    """IPA for ``text`` as espeak-ng speaks it with ``voice``: words separated by spaces, clauses by ", ".

    espeak-ng drops punctuation and prints one clause per line; the clause breaks are pauses, kept as ", ".
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
