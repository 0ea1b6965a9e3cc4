"""`tts` end to end on tiny models: corpus, encode, train (exact resume, flags), synth; bad input is one line,
exit 2 and nothing written."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from longseq.speech.cli import main
from longseq.speech.data.codes import EncodedCorpus
from tests.resume_harness import check_resume

NO_CUDA = not torch.cuda.is_available()


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tts: error:"), err
    return err


def write_wav(path, samples, rate=24_000):
    sf.write(path, np.asarray(samples, dtype=np.float32), rate, subtype="FLOAT")
    return path


def tone(seconds=1.5, rate=24_000):
    t = np.arange(int(seconds * rate)) / rate
    return 0.2 * np.sin(2 * np.pi * 150 * t)


# corpus and encode


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "espeak"
    assert (
        main(["corpus", "--output", str(out), "--speakers", "2", "--sentences-per-speaker", "2"]
             + ["--heldout-speakers", "1", "--heldout-sentences", "1"])
        == 0
    )  # fmt: skip
    return out


def test_corpus(tiny_corpus):
    rows = (tiny_corpus / "metadata.jsonl").read_text().splitlines()
    assert len(rows) == 5 and json.loads(rows[0])["speaker"] == "spk000"


def test_encode_a_corpus_and_one_file(synthetic_corpus, mel_codec, encoded_corpus, tmp_path):
    encoded = EncodedCorpus.load(encoded_corpus)
    assert len(encoded) == 9 and encoded.frame_rate == 25.0 and encoded.codes[0].shape[0] == 4
    assert encoded.splits.count("train") == 6 and encoded.codec == str(mel_codec)
    single = tmp_path / "one.safetensors"
    wav = synthetic_corpus / "wavs" / "spk0_0.wav"
    assert main(["encode", "--audio", str(wav), "--codec", str(mel_codec), "--output", str(single)]) == 0
    assert load_file(single)["codes"].shape == (4, 25)


def test_encode_bad_inputs(synthetic_corpus, mel_codec, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = tmp_path / "o.safetensors"
    (tmp_path / "x.wav").write_text("hello")
    write_wav(tmp_path / "nan.wav", np.full(24_000, np.nan))
    codec = ["--codec", str(mel_codec)]
    cases = [
        (["--audio", "x.wav", "--codec", "encodec"], "encodec_24khz-d7cc33bc.th"),
        (["--audio", "x.wav", "--codec", str(tmp_path)], "no config.json"),
        (["--audio", "x.wav", "--codec", "mel-tiny"], "unknown codec"),
        (["--audio", "x.wav", "--codec", "encodec-5kbps"], "bandwidth"),
        (["--audio", "x.wav", *codec], "not an audio file"),
        (["--audio", "nan.wav", *codec], "NaN or infinite"),
        (["--codec", "encodec"], "exactly one of"),
        (["--corpus", str(tmp_path / "x.wav"), *codec], "is not a corpus"),
        (["--audio", "x.wav", *codec, "--codec-weights", str(tmp_path)], "EnCodec weights were given"),
        (["--audio", "x.wav", *codec, "--device", "cuda"], "CUDA is not available") if NO_CUDA else None,
    ]
    for extra, message in filter(None, cases):
        extra = [str(tmp_path / a) if a.endswith(".wav") else a for a in extra]
        assert main(["encode", *extra, "--output", str(out)]) == 2, extra
        assert message in one_line_error(capsys)
    assert not out.exists()
    # The output is never an input, a directory or another kind of file.
    nan = str(tmp_path / "nan.wav")
    for output, message in ((nan, "must be a .safetensors"), (str(tmp_path), "is a directory")):
        assert main(["encode", "--audio", nan, *codec, "--output", output]) == 2
        assert message in one_line_error(capsys)
    codes = tmp_path / "codes.safetensors"
    codes.write_bytes(b"keep")
    assert main(["encode", "--audio", str(codes), *codec, "--output", str(codes)]) == 2
    assert "would overwrite the input" in one_line_error(capsys) and codes.read_bytes() == b"keep"


# train


@pytest.fixture(scope="module")
def tiny_model(synthetic_corpus, mel_codec, quick_train, tmp_path_factory):
    """A valle2-tiny model trained for a few steps on the synthetic corpus (encoded now) over a mel-tiny codec."""
    out = tmp_path_factory.mktemp("models") / "tts"
    args = ["--model", "valle2-tiny", "--data.corpus", str(synthetic_corpus), "--codec", str(mel_codec)]
    assert main(["train", *args, "--output", str(out), *quick_train]) == 0
    return out


def test_train_output_is_self_contained(tiny_model):
    from longseq.core.checkpoint import read_config

    assert read_config(tiny_model)["codec"] == "codec" and (tiny_model / "codec" / "model.safetensors").is_file()
    assert sorted(p.name for p in tiny_model.iterdir()) == ["codec", "config.json", "model.safetensors"]


def test_train_print_config(capsys):
    assert main(["train", "--trainer.max_steps", "7", "--print_config"]) == 0
    assert "  max_steps: 7\n" in capsys.readouterr().out


# What each kind of model trains on: audio or an encoded corpus, and a codec (a Mel-VAE for CLaM-TTS).
KINDS = {
    "codec": ("mel-tiny", "audio", None),
    "valle2": ("valle2-tiny", "codes", "mel"),
    "clam": ("clam-tts-tiny", "audio", "vae"),
    "speechssm": ("speechssm-tiny", "codes", "mel"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_train_resumes_exactly(kind, synthetic_corpus, encoded_corpus, mel_codec, mel_vae_codec, tmp_path, monkeypatch):
    files = {"audio": synthetic_corpus, "codes": encoded_corpus, "mel": mel_codec, "vae": mel_vae_codec}
    model, corpus, codec = KINDS[kind]
    data = ["--model", model, "--data.corpus", str(files[corpus])] + (["--codec", str(files[codec])] if codec else [])
    quick = ["--trainer.progress_bar", "false", "--trainer.limit_val_batches", "0"]
    quick += ["--data.batch_size", "2", "--optimizer.warmup_steps", "1", "--optimizer.lr", "3e-3"]

    def command(output, steps):
        return ["train", *data, "--output", output, "--trainer.max_steps", steps, *quick]

    check_resume(main, command, lambda output: ["--model", output], tmp_path, monkeypatch)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data.max_seconds", "0"], "data.max_seconds must be a positive"),
        (["--data.max_seconds", "nan"], "data.max_seconds"),
        (["--data.max_seconds", "0.01"], "fewer than 2 codec frames"),
        (["--data.batch_size", "0"], "data.batch_size must be >= 1"),
        (["--data.pair_probability", "1.5"], "data.pair_probability must lie in [0, 1]"),
        (["--data.crop_seconds", "1e9"], "data.crop_seconds must be at most 60"),
        (["--data.corpus", "MISSING"], "no such file or directory"),
        (["--data.corpus", "EMPTY"], "is not a corpus"),
        (["--optimizer.lr", "-1"], "lr must be positive"),
        (["--trainer.max_steps", "0"], "max_steps must be positive"),
        (["--trainer.devices", "0"], "devices must be positive"),
        (["--trainer.resume", "last"], "needs a checkpoint_dir"),
        (["--trainer.checkpoint_dir", "OUT/checkpoints"], "lies inside --output"),
        (["--group_size", "3"], "group_size"),
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--model", "mel-tiny", "--tokenizer", "phonemes"], "MelCodecConfig has no field tokenizer"),
        (["--model", "mel-tiny", "--data.corpus", "CODES"], "a codec trains on audio"),
        (["--model", "mel-tiny", "--data.corpus", "AUDIO", "--data.crop_seconds", "0.01"], "too short"),
        (["--codec", "encodec"], "was encoded with the codec"),
    ],
)
def test_train_bad_inputs(extra, message, synthetic_corpus, encoded_corpus, mel_codec, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "EMPTY").mkdir()
    out = tmp_path / "out"
    names = {"MISSING": tmp_path / "missing", "EMPTY": tmp_path / "EMPTY", "CODES": encoded_corpus}
    names |= {"AUDIO": synthetic_corpus, "OUT/checkpoints": out / "checkpoints"}
    argv = ["train", "--model", "valle2-tiny", "--data.corpus", str(encoded_corpus), "--codec", str(mel_codec)]
    argv += ["--output", str(out), "--trainer.max_steps", "2", "--trainer.progress_bar", "false"]
    assert main([*argv, *(str(names.get(a, a)) for a in extra)]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["EMPTY"]


def test_data_config_refuses_what_no_flag_can_give():
    """Values a YAML config or a Python caller can give (the flags refuse NaN and infinity already)."""
    from longseq.speech.data.config import SpeechDataConfig

    for bad in ({"max_seconds": float("nan")}, {"crop_seconds": float("inf")}, {"pair_probability": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SpeechDataConfig(**bad)


def test_a_run_of_many_steps_holds_a_bounded_epoch():
    """The sampler holds a permutation of an epoch's items: a run of 10^12 steps must not try to allocate one."""
    from longseq.core.train import TrainerConfig
    from longseq.speech.tasks.train import MAX_EPOCH_ITEMS, _epoch_items, _passes

    assert _epoch_items(TrainerConfig(max_steps=10**12), 16) == MAX_EPOCH_ITEMS
    assert _passes(TrainerConfig(max_steps=10**12), 16, 1000) == MAX_EPOCH_ITEMS // 1000
    assert _passes(TrainerConfig(max_steps=100), 16, 1000) == 1 and _epoch_items(TrainerConfig(max_epochs=2), 4) is None


def test_train_refuses_an_output_that_exists(tiny_model, encoded_corpus, mel_codec, capsys):
    before = sorted(p.name for p in tiny_model.iterdir())
    argv = ["train", "--model", "valle2-tiny", "--data.corpus", str(encoded_corpus), "--codec", str(mel_codec)]
    assert main([*argv, "--output", str(tiny_model), "--trainer.max_steps", "2"]) == 2
    assert "already exists" in one_line_error(capsys) and sorted(p.name for p in tiny_model.iterdir()) == before
    assert main([*argv, "--output", str(encoded_corpus)]) == 2
    assert "would overwrite the input" in one_line_error(capsys)


def test_train_into_phonemes_from_a_checkpoint(tiny_model, encoded_corpus, quick_train, tmp_path, capsys):
    """A characters model fine-tunes into phonemes, and the result speaks."""
    from longseq.core.checkpoint import read_config

    out, wav = tmp_path / "phonemes", tmp_path / "hi.wav"
    argv = ["train", "--model", str(tiny_model), "--tokenizer", "phonemes", "--data.corpus", str(encoded_corpus)]
    assert main([*argv, "--output", str(out), *quick_train]) == 0
    assert read_config(out)["tokenizer"] == "phonemes"
    assert main(["synth", "--model", str(out), "--text", "Hi there.", "--output", str(wav), "--max-seconds", "1"]) == 0
    assert sf.info(wav).samplerate == 24_000


# synth


def test_synth_plain_and_with_prompt(tiny_model, tmp_path, capsys):
    out = tmp_path / "hello.wav"
    png = tmp_path / "hello.png"
    args = ["synth", "--model", str(tiny_model), "--seed", "0", "--max-seconds", "2"]
    assert main([*args, "--text", "Hello there.", "--output", str(out), "--spectrogram", str(png)]) == 0
    assert "real-time factor" in capsys.readouterr().out
    assert sf.info(out).samplerate == 24_000 and png.read_bytes()[:4] == b"\x89PNG"
    # A stereo 44.1 kHz prompt is downmixed and resampled; the output is resampled on request.
    t = np.arange(int(1.5 * 44_100)) / 44_100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 180 * t), 0.2 * np.sin(2 * np.pi * 240 * t)], 1).astype(np.float32)
    sf.write(tmp_path / "prompt.wav", stereo, 44_100)
    prompt = ["--prompt-audio", str(tmp_path / "prompt.wav"), "--prompt-text", "a test prompt"]
    assert main([*args, "--text", "Hi.", "--output", str(out), *prompt, "--sample-rate", "16000"]) == 0
    assert sf.info(out).samplerate == 16_000


def synth_cases():
    prompt = ["--text", "hi", "--prompt-text", "x", "--prompt-audio"]
    return [
        (["--text", "  "], "empty"),
        (["--text", "hello 中文"], "cannot represent"),
        ([*prompt, "text.wav"], "not an audio file"),
        ([*prompt, "short.wav"], "at least 1 s"),
        ([*prompt, "silent.wav"], "silent"),
        ([*prompt, "nan.wav"], "NaN or infinite"),
        ([*prompt, "inf.wav"], "NaN or infinite"),
        ([*prompt, "some_nan.wav"], "NaN or infinite"),
        ([*prompt, "o.wav"], "would overwrite the input"),
        (["--text", "hi", "--prompt-audio", "prompt.wav"], "transcript"),
        (["--text", "hi", "--max-seconds", "0"], "max seconds"),
        (["--text", "hi", "--max-seconds", "nan"], "max_seconds"),
        (["--text", "hi", "--max-seconds", "1e9"], "max seconds"),
        (["--text", "hi", "--top-p", "2"], "top_p"),
        (["--text", "hi", "--seed", "-1"], "--seed must lie in"),
        (["--text", "hi", "--seed", str(2**70)], "--seed must lie in"),
        (["--text", "hi", "--sample-rate", "1000000000"], "--sample-rate must lie in"),
        (["--text", "hi", "--text-file", "x.txt"], "exactly one"),
        (["--text-file", "missing.txt"], "text file not found"),
        (["--text-file", "binary.txt"], "not UTF-8 text"),
        (["--text-file", "o.wav"], "would overwrite the input"),
        (["--text", "hi", "--spectrogram", "nodir/s.png"], "does not exist"),
        (["--text", "hi", "--spectrogram", "o.wav"], "must be a .png"),
        (["--text", "hi", "--device", "cuda"], "CUDA is not available") if NO_CUDA else None,
        (["--text", "hi", "--device", "tpu"], "unknown device"),
        (["--text", "hi", "--model", "CODEC"], "not a text-to-speech model"),
        (["--text", "hi", "--model", "MISSING"], "unknown model"),
    ]


@pytest.mark.parametrize("extra, message", filter(None, synth_cases()))
def test_synth_bad_inputs(extra, message, tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_wav("short.wav", np.full(2400, 0.1))
    write_wav("silent.wav", np.zeros(48_000))
    write_wav("nan.wav", np.full(48_000, np.nan))
    write_wav("inf.wav", np.full(48_000, np.inf))
    write_wav("some_nan.wav", np.where(np.arange(36_000) == 100, np.nan, tone()))
    write_wav("prompt.wav", tone())
    (tmp_path / "text.wav").write_text("not audio")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x01")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    names = {"CODEC": str(tiny_model / "codec"), "MISSING": str(tmp_path / "none")}
    argv = ["synth", "--model", str(tiny_model), "--output", "o.wav", *(names.get(a, a) for a in extra)]
    if extra[-1] == "o.wav":  # the output is also an input
        (tmp_path / "o.wav").write_bytes(before["prompt.wav"])
        before["o.wav"] = before["prompt.wav"]
    assert main(argv) == 2
    assert message in one_line_error(capsys)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_synth_missing_codec_weights(tmp_path, capsys, monkeypatch):
    from longseq.core.registry import from_pretrained

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    from_pretrained("valle2-tiny", codebook_size=1024, codec="encodec").save_pretrained(tmp_path / "m")
    assert main(["synth", "--model", str(tmp_path / "m"), "--text", "hi", "--output", str(tmp_path / "o.wav")]) == 2
    assert "encodec_24khz-d7cc33bc.th" in one_line_error(capsys)
    assert not (tmp_path / "o.wav").exists()
