"""Text -> token ids for the speech models: characters (default), UTF-8 bytes, or espeak-ng phonemes.

Id 0 is padding; symbols take ids 1..n in the order of ``symbols``; bytes take ids 1..256.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

from longseq.core.io import InputError
from longseq.speech.text.phonemes import phonemize

TokenizerKind = Literal["chars", "bytes", "phonemes"]
PAD = 0

CHARS = " abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-()"
# The symbols espeak-ng's English voices print with --ipa (and a few more), plus the clause separator ", ".
PHONEMES = " ,abcdefghijklmnopqrstuvwxyzæçðøŋœɐɑɒɔəɘɚɛɜɞɟɡɣɨɪɫɬɲɹɾʁʃʉʊʋʌʍʎʒʔʲʰˈˌːˑ̩̃θχᵻ"
# Each kind's default alphabet (bytes need none).
SYMBOLS = {"chars": CHARS, "bytes": "", "phonemes": PHONEMES}

_FOLD = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "..."})


def normalize(text: str) -> str:
    """Unicode NFKC, typographic quotes and dashes folded to ASCII, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).translate(_FOLD).split())


@dataclass(kw_only=True)
class TextTokenizer:
    """Args:
    kind: "chars" (lower-cased characters of ``symbols``), "bytes" (UTF-8, any text) or "phonemes"
        (espeak-ng IPA characters of ``symbols``; needs espeak-ng installed).
    symbols: the alphabet for chars / phonemes (ignored for bytes).
    voice: the espeak-ng voice (language) used to phonemize.
    """

    kind: TokenizerKind = "chars"
    symbols: str = CHARS
    voice: str = "en-us"

    def __post_init__(self):
        if self.kind not in ("chars", "bytes", "phonemes"):
            raise ValueError(f"unknown tokenizer kind {self.kind!r}")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("tokenizer symbols must be distinct")
        self._ids = {s: i + 1 for i, s in enumerate(self.symbols)}

    @property
    def vocab_size(self) -> int:
        return 257 if self.kind == "bytes" else len(self.symbols) + 1

    def units(self, text: str) -> str:
        """The string the ids spell: normalised text (lower-cased for chars) or its phonemes."""
        text = normalize(text)
        if not text:
            raise InputError("the text is empty")
        if self.kind == "chars":
            return text.lower()
        if self.kind == "phonemes":
            units = phonemize(text, voice=self.voice)
            if not units:
                raise InputError("the text has nothing to speak (espeak-ng gives no phonemes for it)")
            return units
        return text

    def encode(self, text: str) -> list[int]:
        """Text -> ids; raises InputError for empty text or characters outside the alphabet."""
        units = self.units(text)
        if self.kind == "bytes":
            return [b + 1 for b in units.encode("utf-8")]
        unknown = sorted({c for c in units if c not in self._ids})
        if unknown:
            shown = " ".join(repr(c) for c in unknown[:8])
            raise InputError(f"the text has characters this model's {self.kind} tokenizer cannot represent: {shown}")
        return [self._ids[c] for c in units]

    def symbol_ids(self) -> dict[str, int]:
        """Single characters -> their ids (bytes: the ASCII ones), to carry embeddings across alphabets."""
        if self.kind == "bytes":
            return {chr(b): b + 1 for b in range(128)}
        return dict(self._ids)

    def decode(self, ids: list[int]) -> str:
        if self.kind == "bytes":
            return bytes(i - 1 for i in ids if i != PAD).decode("utf-8", errors="replace")
        return "".join(self.symbols[i - 1] for i in ids if i != PAD)
