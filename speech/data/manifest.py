"""Utterance lists from corpora on disk: our espeak corpus, LJSpeech and LibriTTS layouts.

- ours: ``metadata.jsonl`` (one JSON object per line: audio, text, speaker, split, ...), paths relative to it;
- LJSpeech: ``metadata.csv`` (``id|text|normalized text``) with ``wavs/<id>.wav``; one speaker;
- LibriTTS: ``<subset>/<speaker>/<chapter>/<utt>.wav`` beside ``<utt>.normalized.txt``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from longseq.core.io import InputError


@dataclass(kw_only=True)
class Utterance:
    audio: Path
    text: str
    speaker: str
    split: str = "train"


def read_manifest(path: str | Path) -> list[Utterance]:
    """Every utterance of the corpus at ``path`` (a directory or a ``.jsonl`` manifest), in a stable order."""
    path = Path(path)
    try:
        if path.is_file() and path.suffix == ".jsonl":
            found = _read_jsonl(path)
        elif (path / "metadata.jsonl").is_file():
            found = _read_jsonl(path / "metadata.jsonl")
        elif (path / "metadata.csv").is_file():
            found = _read_ljspeech(path)
        elif path.is_dir() and next(path.rglob("*.normalized.txt"), None) is not None:
            found = _read_libritts(path)
        else:
            raise InputError(
                f"{path} is not a corpus: expected metadata.jsonl (ours), metadata.csv (LJSpeech) "
                "or <speaker>/<chapter>/*.normalized.txt files (LibriTTS)"
            )
    except UnicodeDecodeError as err:
        raise InputError(f"the corpus at {path} holds a file that is not UTF-8 text ({err.reason})") from None
    except csv.Error as err:  # a field over the csv module's limit, a NUL byte
        raise InputError(f"the corpus at {path} has an unreadable metadata.csv: {err}") from None
    if not found:
        raise InputError(f"the corpus at {path} lists no utterances")
    return found


def _read_jsonl(path: Path) -> list[Utterance]:
    found = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            fields = (row["audio"], row["text"], row.get("split", "train"))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise InputError(f"{path}:{n}: not a manifest line with 'audio' and 'text' ({err})") from None
        if not all(isinstance(field, str) for field in fields):
            raise InputError(f"{path}:{n}: 'audio', 'text' and 'split' must be strings")
        audio, text, split = fields
        found.append(Utterance(audio=path.parent / audio, text=text, speaker=str(row.get("speaker", "0")), split=split))
    return found


def _read_ljspeech(root: Path) -> list[Utterance]:
    found = []
    with open(root / "metadata.csv", encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE), 1):
            if len(row) < 2:
                raise InputError(f"{root / 'metadata.csv'}:{n}: expected 'id|text|normalized text'")
            text = row[2] if len(row) > 2 and row[2].strip() else row[1]
            found.append(Utterance(audio=root / "wavs" / f"{row[0]}.wav", text=text, speaker="LJ"))
    return found


def _read_libritts(root: Path) -> list[Utterance]:
    found = []
    for txt in sorted(root.rglob("*.normalized.txt")):
        utt = txt.name.removesuffix(".normalized.txt")
        wav = txt.with_name(f"{utt}.wav")
        if wav.is_file():
            found.append(Utterance(audio=wav, text=txt.read_text(encoding="utf-8").strip(), speaker=utt.split("_")[0]))
    return found
