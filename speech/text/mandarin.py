"""Mandarin -> IPA with tone arrows as VALL-E X's front end writes it (Plachtaa/VALL-E-X ``chinese_to_ipa``).

Digits are spelled by cn2an, jieba cuts words (a space between words), pypinyin gives each syllable in
bopomofo with its tone, and a fixed table turns bopomofo into IPA: tones 1-4 become ``→ ↑ ↓↑ ↓``, the neutral
tone nothing. Latin letters inside Mandarin text are spelled letter by letter (``a`` -> ``ㄟˉ``, ...).

The tables and their order are those of the released model's front end (tests/fixtures/vallex_text_a pins
them); dictionary data of jieba and pypinyin decide word breaks and readings.
"""

from __future__ import annotations

import functools
import logging
import re

# How Latin letters are read inside Mandarin text (case-insensitive).
LATIN_TO_BOPOMOFO = {
    "a": "ㄟˉ",
    "b": "ㄅㄧˋ",
    "c": "ㄙㄧˉ",
    "d": "ㄉㄧˋ",
    "e": "ㄧˋ",
    "f": "ㄝˊㄈㄨˋ",
    "g": "ㄐㄧˋ",
    "h": "ㄝˇㄑㄩˋ",
    "i": "ㄞˋ",
    "j": "ㄐㄟˋ",
    "k": "ㄎㄟˋ",
    "l": "ㄝˊㄛˋ",
    "m": "ㄝˊㄇㄨˋ",
    "n": "ㄣˉ",
    "o": "ㄡˉ",
    "p": "ㄆㄧˉ",
    "q": "ㄎㄧㄡˉ",
    "r": "ㄚˋ",
    "s": "ㄝˊㄙˋ",
    "t": "ㄊㄧˋ",
    "u": "ㄧㄡˉ",
    "v": "ㄨㄧˉ",
    "w": "ㄉㄚˋㄅㄨˋㄌㄧㄡˋ",
    "x": "ㄝˉㄎㄨˋㄙˋ",
    "y": "ㄨㄞˋ",
    "z": "ㄗㄟˋ",
}

# Bopomofo -> IPA, replaced in this order (two-symbol finals before their parts).
BOPOMOFO_TO_IPA = [
    ("ㄅㄛ", "p⁼wo"),
    ("ㄆㄛ", "pʰwo"),
    ("ㄇㄛ", "mwo"),
    ("ㄈㄛ", "fwo"),
    ("ㄅ", "p⁼"),
    ("ㄆ", "pʰ"),
    ("ㄇ", "m"),
    ("ㄈ", "f"),
    ("ㄉ", "t⁼"),
    ("ㄊ", "tʰ"),
    ("ㄋ", "n"),
    ("ㄌ", "l"),
    ("ㄍ", "k⁼"),
    ("ㄎ", "kʰ"),
    ("ㄏ", "x"),
    ("ㄐ", "tʃ⁼"),
    ("ㄑ", "tʃʰ"),
    ("ㄒ", "ʃ"),
    ("ㄓ", "ts`⁼"),
    ("ㄔ", "ts`ʰ"),
    ("ㄕ", "s`"),
    ("ㄖ", "ɹ`"),
    ("ㄗ", "ts⁼"),
    ("ㄘ", "tsʰ"),
    ("ㄙ", "s"),
    ("ㄚ", "a"),
    ("ㄛ", "o"),
    ("ㄜ", "ə"),
    ("ㄝ", "ɛ"),
    ("ㄞ", "aɪ"),
    ("ㄟ", "eɪ"),
    ("ㄠ", "ɑʊ"),
    ("ㄡ", "oʊ"),
    ("ㄧㄢ", "jɛn"),
    ("ㄩㄢ", "ɥæn"),
    ("ㄢ", "an"),
    ("ㄧㄣ", "in"),
    ("ㄩㄣ", "ɥn"),
    ("ㄣ", "ən"),
    ("ㄤ", "ɑŋ"),
    ("ㄧㄥ", "iŋ"),
    ("ㄨㄥ", "ʊŋ"),
    ("ㄩㄥ", "jʊŋ"),
    ("ㄥ", "əŋ"),
    ("ㄦ", "əɻ"),
    ("ㄧ", "i"),
    ("ㄨ", "u"),
    ("ㄩ", "ɥ"),
    ("ˉ", "→"),
    ("ˊ", "↑"),
    ("ˇ", "↓↑"),
    ("ˋ", "↓"),
    ("˙", ""),
    ("，", ","),
    ("。", "."),
    ("！", "!"),
    ("？", "?"),
    ("—", "-"),
]

_HAN = re.compile("[\u4e00-\u9fff]")
_BOPOMOFO_END = re.compile("([\u3105-\u3129])$")
_NUMBER = re.compile(r"\d+(?:\.?\d+)?")


@functools.cache
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading messages on first use
    return jieba


def numbers_to_chinese(text: str) -> str:
    """Spell each number (integers, decimals) in Chinese numerals with cn2an, first occurrence by occurrence."""
    import cn2an

    for number in _NUMBER.findall(text):
        text = text.replace(number, cn2an.an2cn(number), 1)
    return text


def chinese_to_bopomofo(text: str) -> str:
    """Words (jieba) of Han characters -> bopomofo syllables with tone marks (first tone written ``ˉ``), words
    separated by a space; other words (punctuation, Latin) stay as they are, unseparated."""
    from pypinyin import BOPOMOFO, lazy_pinyin

    text = text.replace("、", "，").replace("；", "，").replace("：", "，")
    out = ""
    for word in _jieba().lcut(text, cut_all=False):
        if not _HAN.search(word):
            out += word
            continue
        syllables = [_BOPOMOFO_END.sub(r"\1ˉ", s) for s in lazy_pinyin(word, BOPOMOFO)]
        out += (" " if out else "") + "".join(syllables)
    return out


def chinese_to_ipa(text: str) -> str:
    """VALL-E X's Mandarin phonemes (words separated by spaces, tone arrows after each syllable)."""
    text = chinese_to_bopomofo(numbers_to_chinese(text))
    for letter, reading in LATIN_TO_BOPOMOFO.items():
        text = re.sub(letter, reading, text, flags=re.IGNORECASE)
    for bopomofo, ipa in BOPOMOFO_TO_IPA:
        text = text.replace(bopomofo, ipa)
    text = re.sub("i([aoe])", r"j\1", text)
    text = re.sub("u([aoəe])", r"w\1", text)
    # Retroflex and dental sibilants without a vowel get their syllabic "vowel" (ɹ`, ɹ).
    text = re.sub("([sɹ]`[⁼ʰ]?)([→↓↑ ]+|$)", r"\1ɹ`\2", text).replace("ɻ", "ɹ`")
    return re.sub("([s][⁼ʰ]?)([→↓↑ ]+|$)", r"\1ɹ\2", text)
