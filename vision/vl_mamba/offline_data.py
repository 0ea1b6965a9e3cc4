"""A small visual question answering set from labelled images on disk (nothing is downloaded at run time):

- Fashion-MNIST (its IDX files, in a directory the user gives): "what item is this?" -> the class ("ankle boot"), and
  "is this clothing, footwear or a bag?" -> the category;
- scikit-learn digits: "which digit is this?" -> "seven", and "is the digit even or odd?".

Every image gets both of its questions. The images are written as PNG files beside LLaVA-style JSONL files
(``train.jsonl``, ``test.jsonl``; `vision.vl_mamba.data` reads them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from longseq.core.io import InputError, atomic_output
from longseq.vision.images import load_digits, load_fashion_mnist, split_indices

# Fashion-MNIST's ten classes as answers (T-shirt/top -> "t-shirt"), in label order
FASHION_ITEMS = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
FASHION_CATEGORY = {5: "footwear", 7: "footwear", 9: "footwear", 8: "bag"}  # the rest are clothing
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

QUESTIONS = {
    "item": "what item is this?",
    "category": "is this clothing, footwear or a bag?",
    "digit": "which digit is this?",
    "parity": "is the digit even or odd?",
}


def qa_pairs(source: str, label: int) -> list[tuple[str, str]]:
    """(question kind, answer) pairs for an image of ``source`` ("fashion" | "digits") with class ``label``."""
    if source == "fashion":
        return [("item", FASHION_ITEMS[label]), ("category", FASHION_CATEGORY.get(label, "clothing"))]
    return [("digit", DIGIT_WORDS[label]), ("parity", "even" if label % 2 == 0 else "odd")]


def build_offline_vqa(
    out: str | os.PathLike,
    *,
    fashion_train: int = 3000,
    fashion_test: int = 1000,
    digits_test: int = 360,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> dict[str, int]:
    """Write ``images/``, ``train.jsonl`` and ``test.jsonl`` under ``out``; returns the record counts."""
    from PIL import Image

    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: directory {out.parent} does not exist")
    rng = np.random.default_rng(seed)
    fashion = {split: (None, []) for split in ("train", "test")}  # no Fashion-MNIST asked for: digits only
    if fashion_train or fashion_test:
        fashion = {split: load_fashion_mnist(split, data_dir, flag="--data_dir") for split in ("train", "test")}
    digit_images, digit_labels = load_digits()
    digits_train_idx, digits_test_idx = split_indices(len(digit_labels), digits_test, seed=seed + 1)
    chosen = {
        "train": [("fashion", i) for i in rng.permutation(len(fashion["train"][1]))[:fashion_train]]
        + [("digits", int(i)) for i in digits_train_idx],
        "test": [("fashion", i) for i in rng.permutation(len(fashion["test"][1]))[:fashion_test]]
        + [("digits", int(i)) for i in digits_test_idx],
    }
    (out / "images").mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, items in chosen.items():
        lines = []
        for source, index in items:
            if source == "fashion":
                pixels, label = fashion[split][0][index].numpy(), int(fashion[split][1][index])
                name = f"fashion-{split}-{index}"
            else:
                pixels, label = digit_images[index].numpy(), int(digit_labels[index])
                name = f"digits-{index}"
            Image.fromarray(pixels, mode="L").save(out / "images" / f"{name}.png")
            for kind, answer in qa_pairs(source, label):
                turns = [
                    {"from": "human", "value": f"<image>\n{QUESTIONS[kind]}"},
                    {"from": "gpt", "value": answer},
                ]
                record = {"id": f"{name}-{kind}", "image": f"images/{name}.png", "kind": kind, "conversations": turns}
                lines.append(json.dumps(record))
        with atomic_output(out / f"{split}.jsonl") as tmp:
            tmp.write_text("\n".join(lines) + "\n")
        counts[split] = len(lines)
    return counts
