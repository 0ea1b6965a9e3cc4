"""One resume check for every training command: resume must be exact, and a resume that is silently ignored
must fail the check.

Four runs of the same ``total``-step command, each with checkpoints every step and the train loss logged
every step (CSV):

    A: uninterrupted.
    B: interrupted at step ``stop`` (an exception raised from inside the training loop, as a crash would).
    C: ``--trainer.resume last`` in B's checkpoint directory, with A's final weights as its starting model.
    D: the same as C without the resume flag: a fresh start from those weights.

Resumed, C ignores its starting weights and continues B from its checkpoint: its losses are A's from step
``stop`` on, and its last checkpoint holds A's weights, optimizer state and loop (data) position. If resume were
dropped, C would be D, whose losses must differ from A's (other weights, a fresh optimizer, schedule and data
order); the check asserts that they do, so it can tell the two apart. Every step is reseeded from (seed, step)
(`longseq.core.train.StepSeed`), so dropout does not make resumed and uninterrupted runs differ.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from longseq.core.checkpoint import load_pickle


class Interrupted(Exception):
    """Raised by `InterruptAt` to end run B part-way."""


class InterruptAt(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Interrupted(f"interrupted at step {self.step}")


@dataclass
class Run:
    output: Path
    checkpoint_dir: Path
    losses: dict[int, float]

    def last(self) -> dict[str, Any]:
        return load_pickle(self.checkpoint_dir / "last.ckpt")


def check_resume(
    main: Callable[[list[str]], int],
    command: Callable[[Path, int], list[str]],
    start_from: Callable[[Path], list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    total: int = 6,
    stop: int = 3,
    loss: str = "train/loss",
) -> None:
    """Run the four runs and assert exact resume (module docstring).

    Args:
        main: the tool's ``main(argv) -> exit code``.
        command: (output path, max_steps) -> argv of one training run (everything but the trainer flags the
            harness adds: checkpoint_dir, checkpoint_every_n_steps, log_every_n_steps, logger, log_dir, resume).
        start_from: (output of a finished run) -> the flags that make a run start from that run's weights
            (e.g. ``["--model", str(output)]``); given after ``command``'s flags, so they override them.
        loss: the logged train-loss column.
    """

    def train(name: str, extra: list[str], checkpoint_dir: Path | None = None, interrupt: bool = False) -> Run:
        run_dir = tmp_path / name
        run_dir.mkdir()
        checkpoint_dir = checkpoint_dir or run_dir / "checkpoints"
        logs = ["--trainer.log_every_n_steps", "1", "--trainer.logger", "csv", "--trainer.log_dir", run_dir / "logs"]
        checkpoints = ["--trainer.checkpoint_dir", checkpoint_dir, "--trainer.checkpoint_every_n_steps", "1"]
        argv = [str(arg) for arg in [*command(run_dir / "out", total), *extra, *checkpoints, *logs]]
        with monkeypatch.context() as patch:
            if interrupt:
                patch.setattr(L.Trainer, "__init__", _with_callback(L.Trainer.__init__, InterruptAt(stop)))
            code = main(argv)
        assert (code != 0) if interrupt else (code == 0), f"run {name} exited {code}: {argv}"
        return Run(run_dir / "out", checkpoint_dir, _losses(run_dir / "logs", loss))

    a = train("a", [])
    b = train("b", [], interrupt=True)
    assert b.last()["global_step"] == stop
    c = train("c", [*start_from(a.output), "--trainer.resume", "last"], checkpoint_dir=b.checkpoint_dir)
    d = train("d", start_from(a.output))

    assert sorted(a.losses) == list(range(total)), f"run A logged steps {sorted(a.losses)}"
    assert min(c.losses) == stop, f"the resumed run logged steps {sorted(c.losses)}: it did not continue from {stop}"
    tail = {step: a.losses[step] for step in range(stop, total)}
    torch.testing.assert_close(c.losses, tail, rtol=0, atol=1e-6, msg="resumed losses differ from uninterrupted ones")
    fresh = [d.losses[step - stop] for step in range(stop, total)]
    assert max(abs(x - y) for x, y in zip(fresh, tail.values())) > 1e-6, (
        "a fresh restart from the same weights reproduces the uninterrupted losses, so this check cannot tell a "
        "resumed run from one whose resume was ignored; make the run longer or its optimizer state matter more"
    )
    a_last, c_last = a.last(), c.last()
    assert c_last["global_step"] == a_last["global_step"] == total
    _assert_same(c_last["state_dict"], a_last["state_dict"], "model weights")
    _assert_same(c_last["optimizer_states"], a_last["optimizer_states"], "optimizer state")
    _assert_same(c_last["loops"], a_last["loops"], "loop and data position")


def _with_callback(init: Callable, callback: L.Callback) -> Callable:
    def patched(self, *args, callbacks=None, **kwargs):
        init(self, *args, callbacks=[*(callbacks or []), callback], **kwargs)

    return patched


def _losses(log_dir: Path, column: str) -> dict[int, float]:
    """step -> train loss, from the run's CSV log (one metrics.csv under log_dir)."""
    (metrics,) = log_dir.rglob("metrics.csv")
    with open(metrics) as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row.get(column)]
    assert rows, f"{metrics} logs no {column!r} (columns: {reader.fieldnames})"
    return {int(row["step"]): float(row[column]) for row in rows}


def _assert_same(got: Any, expected: Any, what: str, path: str = "") -> None:
    """Deep equality of checkpoint contents (tensors exactly), naming the first difference."""
    where = f"{what} at {path or 'top'}"
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor) and torch.equal(got, expected), f"{where} differs"
    elif isinstance(expected, Mapping):
        assert isinstance(got, Mapping) and set(got) == set(expected), f"{where}: keys differ"
        for key in expected:
            _assert_same(got[key], expected[key], what, f"{path}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(got, expected)):
            _assert_same(x, y, what, f"{path}[{i}]")
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"
