"""`make demo`: the driver and its core step (shortened to a few training steps)."""

from __future__ import annotations

import re

import pytest

from examples import demo, demo_core


def test_the_core_demo_step_trains_saves_reloads_and_generates(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_core, "MAX_STEPS", 3)
    monkeypatch.setattr(demo_core, "SEQ_LEN", 64)
    demo.main(["--only", "core", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    step = tmp_path / "core"
    assert (step / "loss.png").stat().st_size > 1000
    assert sorted(p.name for p in (step / "model").iterdir()) == ["config.json", "model.safetensors"]
    assert (step / "checkpoints" / "last.ckpt").is_file()
    assert "logits identical = True" in out
    assert "sampled continuation (top-4): " in out
    assert re.search(r"^\d+/60 bases match", out, re.MULTILINE)
    assert "demo finished" in out


def test_an_unknown_step_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--only", "nonsense"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
