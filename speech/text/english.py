"""English -> IPA as VALL-E X's front end writes it (Plachtaa/VALL-E-X ``english_to_ipa2``).

ASCII-fold and lower-case (Unidecode), expand a fixed list of abbreviations, spell numbers with inflect, look
the words up in eng_to_ipa's CMU-based dictionary, then rewrite a few symbols: dark ``l`` before a consonant
or a word end becomes ``ɫ``, ``r`` becomes ``ɹ``, the affricate ligatures are split. A word the dictionary lacks
comes out lower-cased with a ``*``, which the released model was trained on and so is kept.

The rules and their order are those of the released model's front end; any change here changes the ids the
model sees (tests/fixtures/vallex_text_a pins them).
"""

from __future__ import annotations

import functools
import re

# Applied in this order ("mrs" before "mr"); a match needs the period and a word start.
ABBREVIATIONS = [
    ("mrs", "misess"),
    ("mr", "mister"),
    ("dr", "doctor"),
    ("st", "saint"),
    ("co", "company"),
    ("jr", "junior"),
    ("maj", "major"),
    ("gen", "general"),
    ("drs", "doctors"),
    ("rev", "reverend"),
    ("lt", "lieutenant"),
    ("hon", "honorable"),
    ("sgt", "sergeant"),
    ("capt", "captain"),
    ("esq", "esquire"),
    ("ltd", "limited"),
    ("col", "colonel"),
    ("ft", "fort"),
]
_ABBREVIATIONS = [(re.compile(rf"\b{short}\.", re.IGNORECASE), long) for short, long in ABBREVIATIONS]

_THOUSANDS = re.compile(r"([0-9][0-9,]+[0-9])")
_POUNDS = re.compile(r"£([0-9,]*[0-9]+)")
_DOLLARS = re.compile(r"\$([0-9.,]*[0-9]+)")
_DECIMAL = re.compile(r"([0-9]+\.[0-9]+)")
_ORDINAL = re.compile(r"[0-9]+(st|nd|rd|th)")
_NUMBER = re.compile(r"[0-9]+")
# An l followed by consonants (or nothing) up to the end of its word is dark.
_DARK_L = re.compile(r"l([^aeiouæɑɔəɛɪʊ ]*(?: |$))")
_IPA2 = [("r", "ɹ"), ("ʤ", "dʒ"), ("ʧ", "tʃ")]


@functools.cache
def _inflect():
    import inflect

    return inflect.engine()


def _money(amount: str) -> str:
    """ "$12.05" -> "12 dollars, 5 cents" (digits stay digits: `_NUMBER` spells them next)."""
    parts = amount.split(".")
    if len(parts) > 2:
        return amount + " dollars"
    dollars = int(parts[0]) if parts[0] else 0
    cents = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    dollar = "dollar" if dollars == 1 else "dollars"
    cent = "cent" if cents == 1 else "cents"
    if dollars and cents:
        return f"{dollars} {dollar}, {cents} {cent}"
    if dollars:
        return f"{dollars} {dollar}"
    if cents:
        return f"{cents} {cent}"
    return "zero dollars"


def _number(digits: str) -> str:
    """Cardinals; 1001-2999 read as years ("nineteen ninety-five", "two thousand five", "twenty-one hundred")."""
    n = int(digits)
    words = _inflect().number_to_words
    if not 1000 < n < 3000:
        return words(n, andword="")
    if n == 2000:
        return "two thousand"
    if 2000 < n < 2010:
        return "two thousand " + words(n % 100)
    if n % 100 == 0:
        return words(n // 100) + " hundred"
    return words(n, andword="", zero="oh", group=2).replace(", ", " ")


def normalize_numbers(text: str) -> str:
    """Spell every number: thousands separators, pounds, dollars, decimals, ordinals, then cardinals."""
    text = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _POUNDS.sub(r"\1 pounds", text)
    text = _DOLLARS.sub(lambda m: _money(m.group(1)), text)
    text = _DECIMAL.sub(lambda m: m.group(1).replace(".", " point "), text)
    text = _ORDINAL.sub(lambda m: _inflect().number_to_words(m.group(0)), text)
    return _NUMBER.sub(lambda m: _number(m.group(0)), text)


def english_to_ipa(text: str) -> str:
    """VALL-E X's English phonemes: words separated by single spaces, punctuation kept where eng_to_ipa keeps it."""
    import eng_to_ipa
    from unidecode import unidecode

    text = unidecode(text).lower()
    for pattern, long in _ABBREVIATIONS:
        text = pattern.sub(long, text)
    phonemes = re.sub(r"\s+", " ", eng_to_ipa.convert(normalize_numbers(text)))
    phonemes = _DARK_L.sub(lambda m: "ɫ" + m.group(1), phonemes)
    for old, new in _IPA2:
        phonemes = phonemes.replace(old, new)
    return phonemes.replace("...", "…")
