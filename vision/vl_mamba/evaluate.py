"""Scoring VL-Mamba on a VQA set: batched greedy answers, exact match and VQA accuracy, overall and per question type.

- Batches hold questions of one prompt length, so no prompt is padded: a recurrent LM's state would carry the
  padding. The answers are then the ones asked one at a time (tested).
- Exact match compares the answer with the record's (the first gpt turn) after lower-casing and trimming.
- VQA accuracy follows the VQAv2 metric: answers are normalised (punctuation, articles, number words), and with
  the record's ``answers`` (the ten human answers) a prediction scores min(1, matches / 3) averaged over the ten
  leave-one-out subsets; a record with one reference answer scores the normalised exact match.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import torch

from longseq.vision.vl_mamba.data import VQARecord, encode_prompt, load_image

NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"])
}
ARTICLES = {"a", "an", "the"}


def normalize_answer(text: str) -> str:
    """VQAv2-style normalisation: lower case, no punctuation (a decimal point kept), number words as digits, no
    articles, single spaces."""
    text = text.lower().replace("\n", " ").replace("\t", " ").strip()
    text = re.sub(r"(?!(?<=\d)\.(?=\d))[^\w\s]", " ", text)
    words = [NUMBER_WORDS.get(w, w) for w in text.split() if w not in ARTICLES]
    return " ".join(words)


def vqa_accuracy(prediction: str, references: list[str]) -> float:
    """VQAv2 accuracy of one prediction against the human answers (module docstring)."""
    pred = normalize_answer(prediction)
    refs = [normalize_answer(r) for r in references]
    if len(refs) == 1:
        return float(pred == refs[0])
    scores = [min(1.0, sum(r == pred for j, r in enumerate(refs) if j != i) / 3) for i in range(len(refs))]
    return sum(scores) / len(scores)


@dataclass
class Prediction:
    id: str
    question_type: str
    question: str
    answer: str
    prediction: str
    exact_match: float
    vqa_accuracy: float


def answer_batches(records: list[VQARecord], tokenizer, batch_size: int) -> list[list[tuple[int, list[int]]]]:
    """(record index, prompt ids) batches, each of one prompt length, in the records' order within a length."""
    by_length: dict[int, list[tuple[int, list[int]]]] = defaultdict(list)
    for i, record in enumerate(records):
        ids = encode_prompt(tokenizer, record.question)
        by_length[len(ids)].append((i, ids))
    return [group[s : s + batch_size] for group in by_length.values() for s in range(0, len(group), batch_size)]


@torch.no_grad()
def predict(model, tokenizer, records: list[VQARecord], *, batch_size: int, max_new_tokens: int, device) -> list[str]:
    """Greedy answers to each record's first question, batched by prompt length (progress bar on a terminal)."""
    from tqdm.auto import tqdm

    image_config = model.image_config()
    answers: list[str] = [""] * len(records)
    for batch in tqdm(answer_batches(records, tokenizer, batch_size), desc="answering", unit="batch", disable=None):
        images = torch.stack([load_image(records[i].image, **image_config) for i, _ in batch]).to(device)
        ids = torch.tensor([prompt for _, prompt in batch], device=device)
        tokens = model.generate(images, ids, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_id)
        for (i, _), row in zip(batch, tokens.tolist()):
            answers[i] = tokenizer.decode(row)
    return answers


def score(records: list[VQARecord], answers: list[str]) -> tuple[list[Prediction], dict]:
    """Per-record predictions and the metrics: overall and per question type (exact match, VQA accuracy, count)."""
    predictions = []
    for record, answer in zip(records, answers):
        references = list(record.answers) if record.answers else [record.answer]
        predictions.append(
            Prediction(
                id=record.id,
                question_type=record.question_type,
                question=record.question,
                answer=record.answer,
                prediction=answer,
                exact_match=float(answer.strip().lower() == record.answer.strip().lower()),
                vqa_accuracy=vqa_accuracy(answer, references),
            )
        )
    groups: dict[str, list[Prediction]] = defaultdict(list)
    for p in predictions:
        groups[p.question_type or "unspecified"].append(p)

    def summary(items: list[Prediction]) -> dict:
        n = len(items)
        return {
            "count": n,
            "exact_match": sum(p.exact_match for p in items) / n,
            "vqa_accuracy": sum(p.vqa_accuracy for p in items) / n,
        }

    metrics = {"overall": summary(predictions), "per_question_type": {k: summary(v) for k, v in sorted(groups.items())}}
    return predictions, metrics
