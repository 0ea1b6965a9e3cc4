import json

import numpy as np
import pytest
import soundfile as sf
from safetensors.torch import load_file

from longseq.speech.cli import main
from longseq.speech.data.codes import EncodedCorpus


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tts: error:")
    return err


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    assert (
        main(["corpus", "--out", str(out), "--speakers", "2", "--sentences-per-speaker", "2"]
             + ["--heldout-speakers", "1", "--heldout-sentences", "1"])
        == 0
    )  # fmt: skip
    return out


def test_corpus(tiny_corpus):
    rows = (tiny_corpus / "metadata.jsonl").read_text().splitlines()
    assert len(rows) == 5 and json.loads(rows[0])["speaker"] == "spk000"


def test_encode_corpus_with_mel_codec(tiny_corpus, tmp_path):
    from longseq.speech.codecs.mel import MelCodec, preset

    MelCodec(preset("mel-tiny")).save_pretrained(tmp_path / "codec")
    out = tmp_path / "codes.safetensors"
    assert main(["encode", "--corpus", str(tiny_corpus), "--codec", str(tmp_path / "codec"), "--out", str(out)]) == 0
    encoded = EncodedCorpus.load(out)
    assert len(encoded) == 5 and encoded.frame_rate == 25.0 and encoded.codes[0].shape[0] == 4
    assert encoded.splits.count("train") == 2

    single = tmp_path / "one.safetensors"
    wav = tiny_corpus / json.loads((tiny_corpus / "metadata.jsonl").read_text().splitlines()[0])["audio"]
    assert main(["encode", "--audio", str(wav), "--codec", str(tmp_path / "codec"), "--out", str(single)]) == 0
    assert load_file(single)["codes"].shape[0] == 4


def test_encode_bad_inputs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = tmp_path / "o.safetensors"
    notaudio = tmp_path / "x.wav"
    notaudio.write_text("hello")
    assert main(["encode", "--audio", str(notaudio), "--codec", "encodec", "--out", str(out)]) == 2
    assert "encodec_24khz-d7cc33bc.th" in one_line_error(capsys)
    assert main(["encode", "--audio", str(notaudio), "--codec", str(tmp_path), "--out", str(out)]) == 2
    assert "no config.json" in one_line_error(capsys)
    assert main(["encode", "--codec", "encodec", "--out", str(out)]) == 2
    assert "exactly one of" in one_line_error(capsys)
    assert not out.exists()


@pytest.fixture(scope="module")
def tiny_model(tiny_corpus, tmp_path_factory):
    """A mel-tiny codec and a valle2-tiny model trained for a few steps on the tiny espeak corpus."""
    root = tmp_path_factory.mktemp("models")
    quick = ["--steps", "3", "--batch-size", "2", "--warmup-steps", "1", "--progress-bar", "false"]
    assert (
        main(["train", "--model", "mel-tiny", "--corpus", str(tiny_corpus), "--out", str(root / "codec"), *quick]) == 0
    )
    args = ["--model", "valle2-tiny", "--corpus", str(tiny_corpus), "--codec", str(root / "codec")]
    assert main(["train", *args, "--out", str(root / "tts"), "--checkpoint-every", "2", *quick]) == 0
    return root / "tts"


def test_train_outputs_are_self_contained_and_resume(tiny_model, tiny_corpus):
    from longseq.core.checkpoint import load_pickle, read_config

    assert read_config(tiny_model)["codec"] == "codec" and (tiny_model / "codec" / "model.safetensors").is_file()
    assert (tiny_model / "codes.safetensors").is_file()
    assert load_pickle(tiny_model / "checkpoints" / "last.ckpt")["global_step"] == 3
    args = ["--model", "valle2-tiny", "--corpus", str(tiny_model / "codes.safetensors"), "--out", str(tiny_model)]
    assert (
        main(["train", *args, "--steps", "5", "--batch-size", "2", "--resume", "true", "--progress-bar", "false"]) == 0
    )
    assert load_pickle(tiny_model / "checkpoints" / "last.ckpt")["global_step"] == 5


def test_train_into_phonemes_from_a_checkpoint(tiny_model, tmp_path, capsys):
    """A characters model fine-tunes into phonemes, and the result speaks; a codec has no tokenizer to change."""
    from longseq.core.checkpoint import read_config

    out, wav = tmp_path / "phonemes", tmp_path / "hi.wav"
    data = ["--corpus", str(tiny_model / "codes.safetensors"), "--out", str(out)]
    quick = ["--steps", "2", "--batch-size", "2", "--warmup-steps", "1", "--progress-bar", "false"]
    assert main(["train", "--model", str(tiny_model), "--tokenizer", "phonemes", *data, *quick]) == 0
    assert read_config(out)["tokenizer"] == "phonemes"
    assert main(["synth", "--model", str(out), "--text", "Hi there.", "--out", str(wav), "--max-seconds", "1"]) == 0
    assert sf.info(wav).samplerate == 24_000
    capsys.readouterr()
    assert main(["train", "--model", "mel-tiny", "--tokenizer", "phonemes", *data]) == 2
    assert "no setting tokenizer" in one_line_error(capsys)


def test_synth_plain_and_with_prompt(tiny_model, tmp_path, capsys):
    out = tmp_path / "hello.wav"
    png = tmp_path / "hello.png"
    args = ["synth", "--model", str(tiny_model), "--seed", "0", "--max-seconds", "2"]
    assert main([*args, "--text", "Hello there.", "--out", str(out), "--spectrogram", str(png)]) == 0
    assert "real-time factor" in capsys.readouterr().out
    assert sf.info(out).samplerate == 24_000 and png.read_bytes()[:4] == b"\x89PNG"
    # A stereo 44.1 kHz prompt is downmixed and resampled; the output is resampled on request.
    t = np.arange(int(1.5 * 44_100)) / 44_100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 180 * t), 0.2 * np.sin(2 * np.pi * 240 * t)], 1).astype(np.float32)
    sf.write(tmp_path / "prompt.wav", stereo, 44_100)
    prompt = ["--prompt-audio", str(tmp_path / "prompt.wav"), "--prompt-text", "a test prompt"]
    assert main([*args, "--text", "Hi.", "--out", str(out), *prompt, "--sample-rate", "16000"]) == 0
    assert sf.info(out).samplerate == 16_000


def test_synth_bad_inputs(tiny_model, tmp_path, capsys):
    out = tmp_path / "o.wav"
    base = ["synth", "--model", str(tiny_model), "--out", str(out)]
    sf.write(tmp_path / "short.wav", np.full(2400, 0.1, np.float32), 24_000)
    sf.write(tmp_path / "silent.wav", np.zeros(48_000, np.float32), 24_000)
    (tmp_path / "text.wav").write_text("not audio")
    cases = [
        (["--text", "  "], "empty"),
        (["--text", "hello 中文"], "cannot represent"),
        (["--text", "hi", "--prompt-audio", str(tmp_path / "text.wav"), "--prompt-text", "x"], "not an audio file"),
        (["--text", "hi", "--prompt-audio", str(tmp_path / "short.wav"), "--prompt-text", "x"], "at least 1 s"),
        (["--text", "hi", "--prompt-audio", str(tmp_path / "silent.wav"), "--prompt-text", "x"], "silent"),
        (["--text", "hi", "--prompt-audio", str(tmp_path / "silent.wav")], "transcript"),
        (["--text", "hi", "--max-seconds", "0"], "max seconds"),
        (["--text", "hi", "--top-p", "2"], "top_p"),
        (["--text", "hi", "--text-file", "x.txt"], "exactly one"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        assert message in one_line_error(capsys)
    assert main(["synth", "--model", str(tiny_model / "codec"), "--text", "hi", "--out", str(out)]) == 2
    assert "not a text-to-speech model" in one_line_error(capsys)
    assert main(["synth", "--model", str(tmp_path / "none"), "--text", "hi", "--out", str(out)]) == 2
    assert "not found" in one_line_error(capsys)
    assert not out.exists()


def test_synth_missing_codec_weights(tmp_path, capsys, monkeypatch):
    from longseq.speech.models import from_pretrained

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    from_pretrained("valle2-tiny", codebook_size=1024, codec="encodec").save_pretrained(tmp_path / "m")
    assert main(["synth", "--model", str(tmp_path / "m"), "--text", "hi", "--out", str(tmp_path / "o.wav")]) == 2
    assert "encodec_24khz-d7cc33bc.th" in one_line_error(capsys)
    assert not (tmp_path / "o.wav").exists()
