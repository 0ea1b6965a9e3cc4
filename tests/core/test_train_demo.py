"""`make demo`: the driver and its core step (shortened to a few training steps)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from examples import demo, demo_core


def test_the_core_demo_step_trains_saves_reloads_and_generates(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_core, "MAX_STEPS", 3)
    monkeypatch.setattr(demo_core, "STRETCH", 32)
    monkeypatch.setattr(demo_core, "NEW_BASES", 20)
    demo.main(["--only", "core", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    step = tmp_path / "core"
    assert (step / "loss.png").stat().st_size > 1000
    assert sorted(p.name for p in (step / "model").iterdir()) == ["config.json", "model.safetensors"]
    assert (step / "checkpoints" / "last.ckpt").is_file()
    assert "logits identical = True" in out
    assert re.search(r"new bases \d\.\d{3}, repeated bases \d\.\d{3}; a 3-mer model .*: 1\.3\d\d on either", out)
    assert re.search(r"^greedy continuation:  [ACGT]{20}$", out, re.MULTILINE)
    assert re.search(r"^\d+/20 bases recalled", out, re.MULTILINE)
    assert "demo finished" in out


@pytest.mark.slow
def test_the_core_demo_step_learns_to_recall(tmp_path, capsys):
    demo.main(["--only", "core", "--out", str(tmp_path)])  # the real step: about 100 s on one thread
    out = capsys.readouterr().out
    new, repeated = map(float, re.search(r"new bases (\S+), repeated bases (\S+);", out).groups())
    assert repeated < 0.1 < 1.3 < new
    assert int(re.search(r"^(\d+)/60 bases recalled", out, re.MULTILINE).group(1)) >= 55


def test_kmer_baseline_knows_a_periodic_sequence_and_not_noise():
    periodic = torch.arange(4).repeat(500)
    assert demo_core.kmer_cross_entropy(periodic, periodic) < 0.01
    noise = torch.randint(0, 4, (20_000,), generator=torch.Generator().manual_seed(0))
    assert abs(demo_core.kmer_cross_entropy(noise[:15_000], noise[15_000:]) - math.log(4)) < 0.02


def test_tandem_repeats_are_stretches_and_their_copies(monkeypatch):
    monkeypatch.setattr(demo_core, "STRETCH", 3)
    assert demo_core.tandem_repeats(torch.arange(7), every=2).tolist() == [0, 1, 2] * 2 + [2, 3, 4] * 2 + [4, 5, 6] * 2


def test_an_unknown_step_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--only", "nonsense"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
