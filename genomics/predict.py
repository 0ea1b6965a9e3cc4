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

from longseq.genomics.embed import coordinates
from longseq.genomics.models.classifier import SequenceClassifier, outputs_of


@dataclass
class Prediction:
    """One record's row: its id, length, number of windows and ``values`` (k,) aggregated outputs."""

    id: str
    length: int
    windows: int
    values: np.ndarray


@dataclass
class _Sum:
    """A record whose windows are still arriving: their length-weighted sum so far."""

    id: str
    length: int
    n_windows: int
    seen: int = 0
    total: np.ndarray | float = 0.0
    weight: int = 0


def predict_batch(model: SequenceClassifier, batch: dict) -> dict[str, np.ndarray]:
    """A prepared window batch (`genomics.embed.encode_windows`) -> its coordinates and ``values`` (b, k)."""
    logits = model(batch["ids"], batch["lengths"])
    return {**coordinates(batch), "values": outputs_of(logits, model.config.task).cpu().numpy()}


def aggregate(outputs: Iterable[dict[str, np.ndarray]], progress=None) -> Iterator[Prediction]:
    """Window outputs in input order -> each record's `Prediction` (length-weighted mean over its windows), as soon
    as its last window has come."""
    pending: dict[int, _Sum] = {}
    for out in outputs:
        for row, index in enumerate(out["record"].tolist()):
            width = int(out["end"][row] - out["start"][row])
            if index not in pending:
                pending[index] = _Sum(str(out["id"][row]), int(out["length"][row]), int(out["n_windows"][row]))
            rec = pending[index]
            rec.seen += 1
            rec.total = rec.total + out["values"][row].astype(np.float64) * width
            rec.weight += width
            if progress is not None:
                progress.update(width)
            if rec.seen == rec.n_windows:
                del pending[index]
                yield Prediction(rec.id, rec.length, rec.n_windows, (rec.total / rec.weight).astype(np.float32))


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
