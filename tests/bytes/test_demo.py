"""`make demo`, bytes step (shortened): trains, scores the held-out files next to gzip, generates (cached ==
recomputed)."""

from examples import demo, demo_bytes


def test_the_bytes_demo_step(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_bytes, "MAX_STEPS", 2)
    monkeypatch.setattr(demo_bytes, "NEW_BYTES", 12)
    demo.main(["--only", "bytes", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert (tmp_path / "bytes" / "run" / "model.safetensors").is_file()
    assert "held-out files" in out and "byte frequencies alone" in out and "gzip -9" in out
    assert "cached decoding" in out and "same bytes" in out
    assert "demo finished" in out
