"""The bundled trained model (examples/speech_model): `tts synth` with no --model, and the `make demo` step."""

import soundfile as sf

from examples import demo, demo_speech
from longseq.speech.cli import main
from longseq.speech.synthesis import (
    SECONDS_PER_TOKEN_LIMIT,
    SECONDS_PER_TOKEN_MIN,
    bundled_model_dir,
    load_model_and_codec,
)


def test_bundled_model_is_a_self_contained_valle2_with_its_codec():
    lm, codec = load_model_and_codec(None)
    assert bundled_model_dir().is_dir() and type(lm).__name__ == "Valle2" and lm.config.group_size == 2
    assert codec.sample_rate == 24_000 and codec.n_codebooks == lm.config.n_codebooks


def test_synth_with_the_default_model(tmp_path, capsys):
    out = tmp_path / "hello.wav"
    assert main(["synth", "--text", "Hello there.", "--output", str(out), "--seed", "0"]) == 0
    assert "real-time factor" in capsys.readouterr().out
    # Between the bounds relative to the text (a codec frame of slack for the group of 2 frames).
    lm, _ = load_model_and_codec(None)
    info, n = sf.info(out), len(lm.config.text_tokenizer().encode("Hello there."))
    assert (
        info.samplerate == 24_000
        and SECONDS_PER_TOKEN_MIN * n - 0.08 <= info.duration <= SECONDS_PER_TOKEN_LIMIT * n + 0.08
    )


def test_demo_speech_step(tmp_path, capsys):
    demo.main(["--only", "speech", "--out", str(tmp_path)])
    folder = tmp_path / "speech"
    for name in ("speech_plain.wav", "speech_prompted.wav"):
        assert sf.info(folder / name).duration > 0.5
    assert (folder / "speech_plain.png").read_bytes()[:4] == b"\x89PNG"
    assert "demo finished" in capsys.readouterr().out
    assert demo.STEPS["speech"] == demo_speech.__name__
