"""Codebook training under data parallelism: the ranks keep one set of codebooks, learned from all their data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

import longseq.speech.codecs.rvq as rvq
from tests.speech.rvq_ddp_worker import WORLD, batches, quantizers

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def test_two_ranks_learn_the_same_codebooks_as_one_process_on_their_joint_batches(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(HERE / "rvq_ddp_worker.py"), str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(WORLD)]
    # Every buffer, codewords drawn at start or restart included, is the same on both ranks ...
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0, msg=key)
    # ... and the EMA steps used both ranks' data: one process on the joint batches gets the same codebooks.
    joint = [torch.cat(zs) for zs in zip(*(batches(r) for r in range(WORLD)))]
    for name, quantizer in quantizers().items():
        if not name.endswith("_fixed"):
            continue
        quantizer.train()
        for z in joint:
            quantizer(z)
        for key, value in quantizer.state_dict().items():
            torch.testing.assert_close(ranks[0][f"{name}.{key}"], value, msg=f"{name}.{key}")


def test_the_plain_quantizer_of_the_worker_restarts_codewords(monkeypatch):
    """The two-rank test covers the broadcast of restarted codewords only if restarts happen in its batches."""
    drawn = []
    real = rvq.random_rows
    monkeypatch.setattr(rvq, "random_rows", lambda x, n: drawn.append(n) or real(x, n))
    quantizer = quantizers()["plain"].train()
    for z in batches(0):
        quantizer(z)
    codewords = sum(len(cb.embed) for cb in quantizer.codebooks)
    assert sum(drawn) > codewords  # more vectors drawn than the initial codewords: restarts
