"""Text tokenizers for VL-Mamba, stored as ``tokenizer.json`` beside the model.

- `WordTokenizer`: lower-cased words and punctuation marks over a vocabulary built from the training data, for
  the tiny models trained here (ids 0 <pad>, 1 <eos>, 2 <unk>, then the words).
- `HFTokenizer`: a Hugging Face ``tokenizer.json`` (the GPT-NeoX tokenizer of the state-spaces Mamba LMs), read
  with the ``tokenizers`` package from a local file.

Both map text <-> ids with ``encode`` / ``decode`` and name their ``eos_id`` and ``pad_id``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from longseq.core.checkpoint import CheckpointError
from longseq.core.io import atomic_output

TOKENIZER_NAME = "tokenizer.json"
_WORDS = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


class WordTokenizer:
    """Words and single punctuation marks; ids 0 <pad>, 1 <eos>, 2 <unk>, then ``words`` in order."""

    SPECIALS = ("<pad>", "<eos>", "<unk>")
    pad_id, eos_id, unk_id = 0, 1, 2

    def __init__(self, words: Iterable[str]):
        self.words = list(self.SPECIALS) + [w for w in words if w not in self.SPECIALS]
        self.ids = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[str]) -> WordTokenizer:
        """The sorted vocabulary of ``texts``."""
        return cls(sorted({w for text in texts for w in _WORDS.findall(text.lower())}))

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(w, self.unk_id) for w in _WORDS.findall(text.lower())]

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first <eos>, <pad> skipped, joined by spaces (no space before punctuation)."""
        out = []
        for i in ids:
            if i == self.eos_id:
                break
            if i != self.pad_id and 0 <= i < len(self.words):
                out.append(self.words[i])
        return re.sub(r" ([^\sa-z0-9])", r"\1", " ".join(out))

    def save(self, directory: str | os.PathLike) -> None:
        with atomic_output(Path(directory) / TOKENIZER_NAME) as tmp:
            tmp.write_text(json.dumps({"type": "words", "words": self.words[len(self.SPECIALS) :]}, indent=1) + "\n")


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` (e.g. GPT-NeoX for the Mamba LMs). <eos> is ``<|endoftext|>``."""

    def __init__(self, path: str | os.PathLike, *, eos_token: str = "<|endoftext|>"):
        from tokenizers import Tokenizer

        self.path = Path(path)
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # the Rust side raises its own exception type
            raise CheckpointError(f"cannot read {path} as a Hugging Face tokenizer: {err}") from None
        eos = self.tokenizer.token_to_id(eos_token)
        if eos is None:
            raise CheckpointError(f"{path} has no {eos_token} token")
        self.eos_id = self.pad_id = eos

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids).strip()

    def save(self, directory: str | os.PathLike) -> None:
        with atomic_output(Path(directory) / TOKENIZER_NAME) as tmp:
            tmp.write_text(self.path.read_text())


def load_tokenizer(directory: str | os.PathLike) -> WordTokenizer | HFTokenizer:
    """The tokenizer saved in a model directory (ours or a Hugging Face / state-spaces LM directory)."""
    path = Path(directory) / TOKENIZER_NAME
    if not path.is_file():
        raise CheckpointError(f"no {TOKENIZER_NAME} in {directory}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if isinstance(data, dict) and data.get("type") == "words":
        return WordTokenizer(data.get("words", []))
    if isinstance(data, dict) and "model" in data:
        return HFTokenizer(path)
    raise CheckpointError(f"{path} is neither a word vocabulary nor a Hugging Face tokenizer")
