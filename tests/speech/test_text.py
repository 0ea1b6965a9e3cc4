import shutil

import pytest

from longseq.core.io import InputError
from longseq.speech.text.tokenizer import PHONEMES, TextTokenizer, normalize


def test_normalize_folds_typography_and_spaces():
    assert normalize("  \u201cHello\u201d \u2014 it\u2019s   me\u2026 ") == '"Hello" - it\'s me...'


def test_chars_round_trip_lowercases():
    tok = TextTokenizer()
    ids = tok.encode("Hello, World!")
    assert all(0 < i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == "hello, world!"


def test_bytes_represent_any_text():
    tok = TextTokenizer(kind="bytes")
    text = "naïve 中文 😀"
    ids = tok.encode(text)
    assert tok.vocab_size == 257 and max(ids) <= 256 and min(ids) >= 1
    assert tok.decode(ids) == text


@pytest.mark.parametrize("kind", ["chars", "bytes"])
def test_empty_text_is_refused(kind):
    with pytest.raises(InputError, match="empty"):
        TextTokenizer(kind=kind).encode(" \n\t ")


def test_unrepresentable_text_names_characters():
    with pytest.raises(InputError, match="cannot represent: '中'"):
        TextTokenizer().encode("hello 中")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_phonemes_through_espeak():
    tok = TextTokenizer(kind="phonemes", symbols=PHONEMES)
    units = tok.units("The cat sat. Then it ran!")
    assert "ð" in units and ", " in units
    assert tok.decode(tok.encode("The cat sat. Then it ran!")) == units
    with pytest.raises(InputError, match="nothing to speak"):
        tok.encode("... -")


def test_phonemes_without_espeak_say_how_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InputError, match="apt-get install espeak-ng"):
        TextTokenizer(kind="phonemes", symbols=PHONEMES).encode("hello")


def test_symbol_ids_name_single_characters_of_every_kind():
    assert TextTokenizer().symbol_ids()["a"] == TextTokenizer().encode("a")[0]
    assert TextTokenizer(kind="bytes").symbol_ids()["a"] == TextTokenizer(kind="bytes").encode("a")[0]
    phonemes = TextTokenizer(kind="phonemes", symbols=PHONEMES).symbol_ids()
    assert phonemes["ð"] == PHONEMES.index("ð") + 1 and len(phonemes) == len(PHONEMES)


def test_config_validation():
    with pytest.raises(ValueError, match="distinct"):
        TextTokenizer(symbols="aab")
