"""VALL-E X's text front end against the official pipeline's outputs (tests/fixtures/vallex_text_a: every
intermediate of Plachtaa/VALL-E-X's ``generate_audio`` and ``make_prompt`` for 19 inputs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from longseq.core.checkpoint import CheckpointError
from longseq.core.io import InputError
from longseq.speech.text.vallex import (
    LANGUAGE_IDS,
    PROMPT_LANGUAGE_CODES,
    VALLEX_SYMBOLS,
    VallexTokenizer,
    detect_language,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "vallex_text_a"
BPE = FIXTURE / "bpe_69.json"
CASES = {case["id"]: case for case in json.loads((FIXTURE / "cases.json").read_text(encoding="utf-8"))}


def _japanese_unavailable() -> str | None:
    """Why Japanese cannot run here (None: it can): pyopenjtalk or its dictionary missing (checked without
    touching the network)."""
    from longseq.speech.text.japanese import _pyopenjtalk

    try:
        _pyopenjtalk()
    except InputError as err:
        return str(err)[:200]
    return None


@pytest.fixture(scope="module")
def tokenizer():
    return VallexTokenizer(BPE)


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_official_outputs(tokenizer, case_id):
    case = CASES[case_id]
    if "[JA]" in case["tokenizer_input"] and (reason := _japanese_unavailable()):
        pytest.skip(reason)
    if case["mode"] == "prompt_transcript":
        encoded = tokenizer.encode_prompt(case["input"])
        assert PROMPT_LANGUAGE_CODES[encoded.language] == case["prompt_lang_code"]
    else:
        encoded = tokenizer.encode(case["input"], case["language_arg"])
        assert encoded.language_ids == case["text_language_ids"]
    assert encoded.language == case["language"]
    assert encoded.phonemes == case["phonemes"]
    assert encoded.languages == case["langs"]
    assert encoded.ids == case["phone_tokens"] == case["text_tokens"]


@pytest.mark.parametrize("case_id", [c for c in sorted(CASES) if CASES[c]["langid_pick"] is not None])
def test_langid_picks(case_id):
    case = CASES[case_id]
    assert detect_language(case["input"]) == case["langid_pick"]


def test_our_tokenizer_is_the_official_file(tokenizer):
    """The tokenizer rebuilt from a checkpoint's symbols has the file's vocabulary and ids (tokenizers itself
    reading the file is the oracle), on every case's phonemes and on characters outside the vocabulary."""
    from tokenizers import Tokenizer

    official = Tokenizer.from_file(str(BPE))
    rebuilt = VallexTokenizer.from_symbols(VALLEX_SYMBOLS)
    assert tokenizer.symbols == VALLEX_SYMBOLS
    assert rebuilt._tokenizer.get_vocab() == official.get_vocab()
    for text in [c["phonemes"] for c in CASES.values()] + ['"a;b" [PAD]xyzéQ']:
        assert rebuilt._tokenizer.encode(text).ids == official.encode(text).ids, text


def test_unknown_characters_are_unk(tokenizer):
    encoded = tokenizer.encode('Say "yes"; now.', "en")
    assert encoded.ids.count(0) == 3 and encoded.phonemes.count('"') == 2


def test_language_numberings():
    assert LANGUAGE_IDS == {"en": 0, "zh": 1, "ja": 2}
    assert PROMPT_LANGUAGE_CODES == {"zh": 0, "ja": 1, "en": 2}


@pytest.mark.parametrize(
    "text, language, message",
    [
        ("?!...", "auto", "nothing to pronounce"),
        ("   ", "en", "nothing to pronounce"),
        ("안녕하세요, 반갑습니다.", "auto", "Hangul letters"),
        ("Привет", "en", "Cyrillic letters"),
        ("Hello", "fr", "language must be auto, en, zh, ja or mix"),
        ("[EN][EN]", "mix", "nothing to pronounce"),
    ],
)
def test_bad_text(tokenizer, text, language, message):
    with pytest.raises(InputError, match=message):
        tokenizer.encode(text, language)


def test_files_that_are_not_the_vallex_tokenizer(tmp_path):
    spec = json.loads(BPE.read_text(encoding="utf-8"))
    spec["model"]["merges"] = [["a", "b"]]
    (tmp_path / "merged.json").write_text(json.dumps(spec), encoding="utf-8")
    (tmp_path / "text.json").write_text("not json", encoding="utf-8")
    for name, message in [("merged.json", "not VALL-E X's tokenizer"), ("text.json", "not a tokenizers JSON")]:
        with pytest.raises(CheckpointError, match=message):
            VallexTokenizer(tmp_path / name)
    with pytest.raises(CheckpointError, match="not found"):
        VallexTokenizer(tmp_path / "missing.json")


def test_japanese_without_pyopenjtalk_names_the_extra(tokenizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyopenjtalk", None)  # an import of it now fails
    with pytest.raises(InputError, match="Japanese needs pyopenjtalk"):
        tokenizer.encode("こんにちは", "ja")
