"""A fine-tuned classifier applied to new sequences: the engine behind ``dna predict``.

Records are cut into the windows `genomics.embed` cuts (the model's context by default); the classifier scores
every window, and a record's prediction is the **length-weighted mean of its windows' outputs**: class
probabilities (softmax) for a classifier, label probabilities (sigmoid) for a multi-label head, the values for a
regression. A record no longer than the window is one window, so its row is the classifier's output on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from longseq.genomics.embed import assemble, coordinates
from longseq.genomics.models.classifier import SequenceClassifier, outputs_of


@dataclass
class Prediction:
    """One record's row: its id, length, number of windows and ``values`` (k,) aggregated outputs."""

    id: str
    length: int
    windows: int
    values: np.ndarray


def predict_batch(model: SequenceClassifier, batch: dict) -> dict[str, np.ndarray]:
    """A prepared window batch (`genomics.embed.encode_windows`) -> its coordinates and ``values`` (b, k)."""
    logits = model(batch["ids"], batch["lengths"])
    return {**coordinates(batch), "values": outputs_of(logits, model.config.task).cpu().numpy()}


def aggregate(outputs: Iterable[dict[str, np.ndarray]], progress=None) -> Iterator[Prediction]:
    """Window outputs in input order -> each record's `Prediction` (length-weighted mean over its windows), as soon
    as its last window has come: `genomics.embed.assemble`'s mean pooling, over the outputs instead of embeddings."""
    for rec in assemble(({**out, "emb": out["values"]} for out in outputs), "mean", progress):
        yield Prediction(rec.id, rec.length, len(rec.starts), rec.pooled)


def write_predictions(handle, predictions: Iterable[Prediction], model: SequenceClassifier) -> int:
    """Write a TSV: ``id``, ``length``, ``windows``, one column per class / label / target, and for a classifier
    ``prediction`` (the class of highest probability). Returns the rows written."""
    config = model.config
    columns = ["id", "length", "windows", *config.classes]
    if config.task == "classification":
        columns.append("prediction")
    handle.write("\t".join(columns) + "\n")
    rows = 0
    for p in predictions:
        cells = [p.id, str(p.length), str(p.windows), *(f"{v:.6g}" for v in p.values.tolist())]
        if config.task == "classification":
            cells.append(config.classes[int(np.argmax(p.values))])
        handle.write("\t".join(cells) + "\n")
        rows += 1
    return rows
