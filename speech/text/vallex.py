"""VALL-E X's text front end: text -> phoneme ids and per-token languages, as the released model was trained.

`VallexTokenizer.encode` reproduces Plachtaa/VALL-E-X ``generate_audio`` (a target text) and `encode_prompt`
its ``make_prompt`` (a voice prompt's transcript); tests/fixtures/vallex_text_a holds the official outputs.

1. The language: given, or langid's pick restricted to en/zh/ja (``auto``). The text is wrapped in its tag,
   ``[EN]text[EN]``; ``mix`` text carries its own tags (``[EN]Hello[EN][ZH]你好[ZH]``).
2. Only tagged segments are spoken, in order: each goes through its language's G2P (`english`, `mandarin`,
   `japanese`), ends in ``.`` unless it ends in punctuation, and segments are joined without a separator.
   Every character of a segment's phonemes carries the segment's language.
3. Spaces become ``_`` and the official BPE file (``bpe_69.json``: one id per character, no merges) gives the
   ids; a character outside its vocabulary (``"`` or ``;``) is ``[UNK]`` = 0.

Two language numberings exist: the model's language embedding rows (`LANGUAGE_IDS`: en 0, zh 1, ja 2) and
the code saved in a prompt ``.npz`` (`PROMPT_LANGUAGE_CODES`: zh 0, ja 1, en 2).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from longseq.core.checkpoint import CheckpointError
from longseq.core.io import InputError

LANGUAGES = ("en", "zh", "ja")
TAGS = {"en": "[EN]", "zh": "[ZH]", "ja": "[JA]"}
LANGUAGE_IDS = {"en": 0, "zh": 1, "ja": 2}
PROMPT_LANGUAGE_CODES = {"zh": 0, "ja": 1, "en": 2}
SPECIAL_TOKENS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")
# The characters of the released bpe_69.json after its special tokens, in id order (ids 5..69).
VALLEX_SYMBOLS = "!#*,-.=?NQ^_`abdefghijklmnopstuvwxyz~æçðŋɑɔəɛɥɪɫɯɸɹɾʃʊʑʒʰˈˌθ…⁼↑→↓"
_SEGMENT = re.compile(r"\[(EN|ZH|JA)\](.*?)\[\1\]")
_ENDS_SENTENCE = ".,!?-…~"


@dataclass(frozen=True)
class Encoded:
    """ids (L,) for the text embedding and languages (L,): each token's language (``en``, ``zh``, ``ja``)."""

    ids: list[int]
    languages: list[str]
    phonemes: str
    language: str
    """The language asked for or detected (``mix``: the text's own tags)."""

    @property
    def language_ids(self) -> list[int]:
        """Rows of the model's language embedding."""
        return [LANGUAGE_IDS[lang] for lang in self.languages]


def _phonemize(segment: str, language: str) -> str:
    if language == "en":
        from longseq.speech.text.english import english_to_ipa

        return english_to_ipa(segment)
    if language == "zh":
        from longseq.speech.text.mandarin import chinese_to_ipa

        return chinese_to_ipa(segment)
    from longseq.speech.text.japanese import japanese_to_ipa

    return japanese_to_ipa(segment)


def clean(text: str) -> tuple[str, list[str]]:
    """Tagged text -> (phonemes, one language per character): VALL-E X's ``cje_cleaners``.

    Segments are found per tag and spoken in order of their start; text outside tags is dropped.
    """
    segments = sorted(
        (m for tag in ("EN", "ZH", "JA") for m in re.finditer(rf"\[{tag}\](.*?)\[{tag}\]", text)),
        key=lambda m: m.start(),
    )
    phonemes, languages = "", []
    for match in segments:
        language = match.group(0)[1:3].lower()
        spoken = _phonemize(match.group(1), language).rstrip()
        if spoken and spoken[-1] not in _ENDS_SENTENCE:
            spoken += "."
        phonemes += spoken
        languages += [language] * len(spoken)
    return phonemes, languages


@functools.cache
def _identifier():
    """langid's bundled model restricted to the three languages (its own instance: the module's global one is
    left as other code set it)."""
    from langid.langid import LanguageIdentifier, model

    identifier = LanguageIdentifier.from_modelstring(model, norm_probs=False)
    identifier.set_languages(list(LANGUAGES))
    return identifier


def detect_language(text: str) -> str:
    """langid's pick among en, zh and ja (VALL-E X's ``auto``)."""
    return _identifier().classify(text)[0]


def _supported_script(char: str) -> bool:
    """Latin, Han, kana (and their full-width forms): the scripts the three G2Ps read."""
    code = ord(char)
    return (
        code < 0x0250  # Latin and its extensions
        or 0x1E00 <= code < 0x1F00  # Latin Extended Additional
        or 0x3005 <= code <= 0x3007
        or 0x3040 <= code < 0x3100  # hiragana, katakana
        or 0x31F0 <= code < 0x3200
        or 0x3400 <= code < 0x4DC0  # Han
        or 0x4E00 <= code < 0xA000
        or 0xF900 <= code < 0xFB00
        or 0xFF00 <= code < 0xFFF0  # full-width forms, half-width katakana
    )


def check_speakable(text: str) -> None:
    """Refuse text with nothing to say, or with letters of a script none of the three languages reads."""
    letters = [c for c in text if unicodedata.category(c)[0] in "LN"]
    if not letters:
        raise InputError(f"the text has nothing to pronounce (no letters or digits): {text[:40]!r}")
    foreign = sorted({c for c in letters if not _supported_script(c)})
    if foreign:
        script = unicodedata.name(foreign[0], "unknown").split()[0].title()
        raise InputError(
            f"VALL-E X speaks English, Mandarin and Japanese; the text has {script} letters ({''.join(foreign[:5])})"
        )


class VallexTokenizer:
    """The released VALL-E X text front end over its BPE file (``bpe_69.json``).

    Args:
        bpe_json_path: the official ``utils/g2p/bpe_69.json`` (a `tokenizers` file); a file of another shape is
            a one-line `CheckpointError`.
    """

    def __init__(self, bpe_json_path: str | os.PathLike):
        path = Path(bpe_json_path)
        if not path.is_file():
            raise CheckpointError(f"VALL-E X tokenizer file not found: {path}")
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CheckpointError(f"{path} is not a tokenizers JSON file (VALL-E X's bpe_69.json)") from None
        self.symbols = symbols_of(spec, str(path))
        self._tokenizer = _build(self.symbols)

    @classmethod
    def from_symbols(cls, symbols: str) -> VallexTokenizer:
        """The tokenizer whose vocabulary is the five special tokens followed by ``symbols`` (one id each), as a
        checkpoint's config stores it (`symbols_of` the official file)."""
        tokenizer = cls.__new__(cls)
        tokenizer.symbols = symbols
        tokenizer._tokenizer = _build(symbols)
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return len(SPECIAL_TOKENS) + len(self.symbols)

    def symbol_ids(self) -> dict[str, int]:
        """Characters -> their ids (to carry text embeddings to another alphabet)."""
        return {s: i + len(SPECIAL_TOKENS) for i, s in enumerate(self.symbols)}

    def ids(self, tagged: str) -> Encoded:
        """Tagged text (``[EN]...[EN]``) -> ids and languages (`clean`, then the BPE); ``language`` left empty."""
        phonemes, languages = clean(tagged)
        phonemes = phonemes.replace(" ", "_")
        ids = self._tokenizer.encode(phonemes).ids
        if not ids:
            raise InputError("the text has nothing to pronounce (its phonemes are empty)")
        if len(ids) != len(languages):
            raise InputError(f"the text's phonemes do not map one to one onto tokens: {phonemes!r}")
        return Encoded(ids=ids, languages=languages, phonemes=phonemes, language="")

    def encode(self, text: str, language: str = "auto") -> Encoded:
        """A text to speak (``generate_audio``): language ``auto`` (langid), ``en``, ``zh``, ``ja`` or ``mix``
        (the text holds its own ``[EN]``/``[ZH]``/``[JA]`` tags)."""
        if language not in ("auto", "mix", *LANGUAGES):
            raise InputError(f"language must be auto, en, zh, ja or mix; got {language!r}")
        text = text.replace("\n", "").strip(" ")
        check_speakable(_SEGMENT.sub(r"\2", text) if language == "mix" else text)
        if language == "auto":
            language = detect_language(text)
        tag = TAGS.get(language, "")
        # The leading "_" of the official call lies outside every tag: the cleaner drops it.
        return dataclasses.replace(self.ids(f"_{tag}{text}{tag}".strip()), language=language)

    def encode_prompt(self, transcript: str) -> Encoded:
        """A voice prompt's transcript (``make_prompt``): always langid's language, wrapped in its tag."""
        check_speakable(transcript)
        language = detect_language(transcript)
        tag = TAGS[language]
        return dataclasses.replace(self.ids(f"{tag}{transcript}{tag}".strip()), language=language)


def symbols_of(spec: dict, source: str) -> str:
    """The characters of a VALL-E X BPE file's vocabulary after its special tokens, in id order.

    Raises:
        CheckpointError: a file that is not of that shape: a BPE model without merges whose vocabulary is the
            five special tokens then single characters, numbered in order, and a ``Whitespace`` pre-tokenizer.
    """
    model = spec.get("model") if isinstance(spec, dict) else None
    pre = spec.get("pre_tokenizer") if isinstance(spec, dict) else None
    vocab = model.get("vocab") if isinstance(model, dict) else None
    shaped = (
        isinstance(vocab, dict)
        and model.get("type") == "BPE"
        and not model.get("merges")
        and model.get("unk_token") == "[UNK]"
        and isinstance(pre, dict)
        and pre.get("type") == "Whitespace"
    )
    tokens = sorted(vocab, key=vocab.get) if shaped else []
    if (
        not shaped
        or sorted(vocab.values()) != list(range(len(vocab)))
        or tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS
        or not all(len(t) == 1 for t in tokens[len(SPECIAL_TOKENS) :])
        or len(tokens) == len(SPECIAL_TOKENS)
    ):
        raise CheckpointError(
            f"{source} is not VALL-E X's tokenizer (bpe_69.json: a BPE vocabulary of [UNK] [CLS] [SEP] [PAD] "
            "[MASK] then single characters, no merges, a Whitespace pre-tokenizer)"
        )
    return "".join(tokens[len(SPECIAL_TOKENS) :])


@functools.cache
def _build(symbols: str):
    """A `tokenizers.Tokenizer` with the vocabulary [UNK] [CLS] [SEP] [PAD] [MASK] + ``symbols``, no merges,
    split at whitespace and punctuation (which, with single-character tokens, gives one id per character)."""
    from tokenizers import AddedToken, Tokenizer
    from tokenizers.models import BPE
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *symbols))}
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="[UNK]", fuse_unk=False))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    return tokenizer
