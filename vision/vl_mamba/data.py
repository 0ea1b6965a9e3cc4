"""Image / question / answer records in LLaVA's conversation format (one JSON object per line), and batches
for VL-Mamba.

A record::

    {"id": "fmnist-17", "image": "images/fmnist-17.png",
     "conversations": [{"from": "human", "value": "<image>\\nwhat item is this?"}, {"from": "gpt", "value": "bag"}]}

``image`` is relative to the JSONL file's directory (or absolute). Turns alternate human / gpt; the first human
turn holds the ``<image>`` placeholder. Text is laid out as ``question: <human turn> answer: <gpt turn><eos>`` per
exchange; only the gpt turns (and their <eos>) carry a loss.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from longseq.core.io import InputError
from longseq.vision.vl_mamba.model import IGNORE_INDEX, IMAGE_TOKEN

IMAGE_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class VQARecord:
    id: str
    image: Path
    conversations: tuple[tuple[str, str], ...]  # (from, value) pairs
    question_type: str = ""
    """The record's ``question_type`` (or ``kind``, as make-vqa-data writes it): evaluation scores each type."""
    answers: tuple[str, ...] = ()
    """The human answers a VQAv2 record carries (``answers``), for VQA accuracy; () when it has one answer."""

    @property
    def question(self) -> str:
        return self.conversations[0][1].replace(IMAGE_PLACEHOLDER, "").strip()

    @property
    def answer(self) -> str:
        return self.conversations[1][1]


def read_jsonl(path: str | os.PathLike, images: str | os.PathLike | None = None) -> list[VQARecord]:
    """Records of a LLaVA-style JSONL file; a malformed line raises `InputError` naming its number.

    Relative image paths resolve against ``images`` (default: the JSONL file's directory).
    """
    path = Path(path)
    root = Path(images) if images is not None else path.parent
    if not path.is_file():
        raise InputError(f"no such JSONL file: {path}")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text (a JSONL file of records)") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{where}: not JSON ({err.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            raise InputError(f"{where}: a record needs an 'image' path")
        turns = item.get("conversations")
        if not isinstance(turns, list) or len(turns) < 2 or len(turns) % 2:
            raise InputError(f"{where}: 'conversations' must hold human / gpt turn pairs")
        pairs = []
        for i, turn in enumerate(turns):
            speaker = "human" if i % 2 == 0 else "gpt"
            if not isinstance(turn, dict) or turn.get("from") != speaker or not isinstance(turn.get("value"), str):
                raise InputError(f"{where}: turn {i} must be {{'from': '{speaker}', 'value': text}}")
            if not turn["value"].replace(IMAGE_PLACEHOLDER, "").strip():
                raise InputError(f"{where}: turn {i} is empty")
            pairs.append((speaker, turn["value"]))
        if IMAGE_PLACEHOLDER not in pairs[0][1] or sum(v.count(IMAGE_PLACEHOLDER) for _, v in pairs) != 1:
            raise InputError(f"{where}: the first question must hold the one {IMAGE_PLACEHOLDER} placeholder")
        image = Path(item["image"])
        kind = item.get("question_type", item.get("kind", ""))
        answers = item.get("answers", [])
        if not isinstance(kind, str) or not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise InputError(f"{where}: 'question_type' must be text and 'answers' a list of texts")
        records.append(VQARecord(str(item.get("id", number)), image if image.is_absolute() else root / image,
                                 tuple(pairs), question_type=kind, answers=tuple(answers)))  # fmt: skip
    if not records:
        raise InputError(f"{path} holds no records")
    return records


def load_image(path: str | os.PathLike, *, size: tuple[int, int], mean, std) -> torch.Tensor:
    """An image file -> normalised RGB (3, h, w) at ``size`` (bicubic); unreadable files raise `InputError`."""
    from PIL import Image, UnidentifiedImageError

    try:
        # an image past Pillow's pixel limit (MAX_IMAGE_PIXELS) is refused, not decoded: it could fill the memory
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BICUBIC)
    except FileNotFoundError:
        raise InputError(f"no such image: {path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InputError(f"refusing {path}: {err}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"cannot read {path} as an image: {err}") from None
    x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def prompt_text(question: str) -> str:
    return f"question: {question} answer:"


def encode_prompt(tokenizer, question: str) -> list[int]:
    """Ids of an inference prompt: the image, then the question (``question`` must not be empty)."""
    question = question.replace(IMAGE_PLACEHOLDER, "").strip()
    if not question:
        raise InputError("the question is empty")
    return [IMAGE_TOKEN, *tokenizer.encode(prompt_text(question))]


def encode_follow_up(tokenizer, history, question: str) -> list[int]:
    """Ids of a prompt that continues a conversation: the image, the earlier exchanges (``history``: (question,
    answer) pairs, laid out as in training), then the new question."""
    turns = [(speaker, text) for q, a in history for speaker, text in (("human", q), ("gpt", a))]
    ids = encode_conversation(tokenizer, turns)[0] if turns else [IMAGE_TOKEN]
    return ids + encode_prompt(tokenizer, question)[1:]


def encode_conversation(tokenizer, conversations) -> tuple[list[int], list[int]]:
    """(input_ids with one IMAGE_TOKEN, labels with IGNORE_INDEX outside the answers)."""
    ids, labels = [IMAGE_TOKEN], [IGNORE_INDEX]
    for i in range(0, len(conversations), 2):
        question = conversations[i][1].replace(IMAGE_PLACEHOLDER, "").strip()
        prompt = tokenizer.encode(prompt_text(question))
        answer = tokenizer.encode(conversations[i + 1][1]) + [tokenizer.eos_id]
        ids += prompt + answer
        labels += [IGNORE_INDEX] * len(prompt) + answer
    return ids, labels


class VQADataset(Dataset):
    """Records -> (image (3, h, w), input_ids, labels); images are read when an item is asked for."""

    def __init__(self, records: list[VQARecord], tokenizer, *, image_config: dict):
        self.records = records
        self.tokenizer = tokenizer
        self.image_config = image_config

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        image = load_image(record.image, **self.image_config)
        ids, labels = encode_conversation(self.tokenizer, record.conversations)
        return image, torch.tensor(ids), torch.tensor(labels)


def collate(batch, *, pad_id: int):
    """Stack images; right-pad input_ids with ``pad_id`` and labels with IGNORE_INDEX."""
    images, ids, labels = zip(*batch)
    length = max(len(i) for i in ids)
    padded_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    padded_labels = torch.full((len(ids), length), IGNORE_INDEX, dtype=torch.long)
    for row, (i, lab) in enumerate(zip(ids, labels)):
        padded_ids[row, : len(i)] = i
        padded_labels[row, : len(lab)] = lab
    return torch.stack(images), padded_ids, padded_labels
