"""The released VALL-E X through `tts`: convert, prompt, synth (EnCodec or Vocos), fine-tune, bad input.

The checkpoint is tests/fixtures/valle_a (a tiny model in the release's key layout, 4 heads); EnCodec and Vocos
are built with random weights by their own packages and saved where the commands read official files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import longseq
from longseq.speech.cli import main
from longseq.speech.codecs.encodec import EncodecCodec
from longseq.speech.data.codes import EncodedCorpus
from longseq.speech.models.valle2 import Valle2
from longseq.speech.prompts import VoicePrompt
from longseq.speech.synthesis import _Prompt, _text_ids
from longseq.speech.tasks.data import CodeUtterances, collate_utterances
from longseq.speech.text.vallex import VallexTokenizer
from tests.resume_harness import check_resume

FIXTURES = Path(__file__).parents[1] / "fixtures"
VALLEX = FIXTURES / "valle_a" / "checkpoint.pt"
BPE = FIXTURES / "vallex_text_a" / "bpe_69.json"
ROOT = Path(__file__).parents[2]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tts: error:"), err
    return err


def voice(path: Path, seconds: float) -> Path:
    t = np.arange(int(seconds * 24_000)) / 24_000
    wav = 0.3 * np.sin(2 * np.pi * 160 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, wav.astype(np.float32), 24_000)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A converted model directory, random EnCodec weights and a 1.2-s voice recording."""
    root = tmp_path_factory.mktemp("vallex")
    torch.save(EncodecCodec(pretrained=False).model.state_dict(), root / "encodec.th")
    args = ["convert", "--vallex", str(VALLEX), "--tokenizer", str(BPE), "--output", str(root / "model")]
    assert main([*args, "--n-heads", "4"]) == 0
    return {"model": root / "model", "codec": root / "encodec.th", "voice": voice(root / "voice.wav", 1.2)}


def synth_args(files, output, *extra) -> list[str]:
    return ["synth", "--model", str(files["model"]), "--codec-weights", str(files["codec"]), "--output", str(output),
            "--seed", "0", "--max-seconds", "0.4", *extra]  # fmt: skip


def test_convert_gives_our_directory_with_the_front_end(files):
    model = longseq.from_pretrained(files["model"])
    assert isinstance(model, Valle2) and Valle2.from_pretrained(files["model"]).config.tokenizer == "vallex"
    assert isinstance(model.config.text_tokenizer(), VallexTokenizer)
    assert (model.config.codec, model.config.n_languages) == ("encodec", 3)
    released = longseq.from_pretrained(VALLEX, n_heads=4).state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, released[name], rtol=0, atol=0, msg=name)


def test_synth_with_a_prompt_recording_writes_24khz(files, tmp_path):
    out = tmp_path / "out.wav"
    args = ["--text", "Hello there.", "--language", "en", "--prompt-audio", str(files["voice"])]
    assert main(synth_args(files, out, *args, "--prompt-text", "This is my voice.")) == 0
    info = sf.info(out)
    assert info.samplerate == 24_000 and info.frames > 0


@pytest.fixture(scope="module")
def saved_prompt(files, tmp_path_factory):
    npz = tmp_path_factory.mktemp("prompt") / "voice.npz"
    assert main(["prompt", "--model", str(files["model"]), "--codec-weights", str(files["codec"]),
                 "--audio", str(files["voice"]), "--text", "This is my voice.", "--output", str(npz)]) == 0  # fmt: skip
    return npz


def test_saved_prompt_in_the_official_layout(files, saved_prompt, tmp_path):
    with np.load(saved_prompt, allow_pickle=False) as saved:
        assert saved["audio_tokens"].shape == (1, 90, 8) and int(saved["lang_code"]) == 2
        expected = VallexTokenizer(BPE).encode_prompt("This is my voice.").ids
        assert saved["text_tokens"].tolist() == [expected]
    out = tmp_path / "out.wav"
    assert main(synth_args(files, out, "--text", "Hello there.", "--prompt", str(saved_prompt))) == 0
    assert sf.info(out).samplerate == 24_000


@pytest.mark.slow
def test_vocos_decoding_and_the_sliding_window(files, saved_prompt, tmp_path):
    from longseq.speech.codecs.vocos import VocosDecoder

    weights = tmp_path / "pytorch_model.bin"
    state = VocosDecoder().vocos.state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("feature_extractor.encodec.")}, weights)
    out = tmp_path / "out.wav"
    text = ["--text", "Hello there. How are you?", "--long-text", "sliding-window", "--prompt", str(saved_prompt)]
    assert main(synth_args(files, out, *text, "--vocoder", "vocos", "--vocoder-weights", str(weights))) == 0
    assert sf.info(out).samplerate == 24_000 and sf.info(out).frames > 0.3 * 24_000  # a pause between sentences


def test_prompt_ids_in_the_prompt_language_then_each_target_token_in_its_own():
    """generate_audio: the saved prompt's ids all carry the prompt's language, the target's ids their own."""
    tokenizer = VallexTokenizer(BPE)
    saved = VoicePrompt(codes=torch.zeros(1, 8, 3, dtype=torch.long), text_ids=[5, 6, 7], language="zh")
    ids, languages, n = _text_ids(tokenizer, "[EN]Hi[EN][ZH]你好[ZH]", _Prompt(codes=saved.codes, voice=saved), "mix")
    target = tokenizer.encode("[EN]Hi[EN][ZH]你好[ZH]", "mix")
    assert ids == [5, 6, 7] + target.ids and n == len(target.ids)
    assert languages == [1, 1, 1] + target.language_ids and set(target.language_ids) == {0, 1}


def test_training_items_carry_each_token_language():
    """A Mandarin utterance after an English one (a pair): the English prompt's rows 0, the Mandarin text's 1;
    the batch pads them with 0, and the model's output depends on them."""
    corpus = EncodedCorpus(
        codes=[torch.randint(0, 1024, (8, 6)), torch.randint(0, 1024, (8, 5))],
        texts=["Hello there.", "你好。"],
        speakers=["a", "a"],
        splits=["train", "train"],
        codec="encodec",
        frame_rate=75.0,
    )
    tokenizer = VallexTokenizer(BPE)
    data = CodeUtterances(corpus, [0, 1], tokenizer, n_codebooks=8, pair_probability=1.0, seed=0)
    text, codes, languages = data[1]  # the pair (utterance 0, utterance 1)
    n_prompt = len(tokenizer.encode_prompt("Hello there.").ids)
    assert languages.tolist() == [0] * n_prompt + [1] * (len(text) - n_prompt) and codes.shape == (8, 11)
    single_text, single_languages = data.texts[0]  # utterance 0 alone: English
    batch = collate_utterances([data[1], (single_text, data.codes[0], single_languages)])
    assert batch["languages"].shape == batch["text"].shape and not batch["languages"][1].any()
    model = longseq.from_pretrained(VALLEX, n_heads=4)
    args = (batch["text"], batch["text_lens"], batch["codes"], batch["code_lens"], torch.tensor([2, 2]), 1)
    with torch.no_grad():
        assert not torch.allclose(model(*args, batch["languages"])[0], model(*args)[0])


@pytest.fixture(scope="module")
def ljspeech_codes(files, tmp_path_factory):
    """An LJSpeech-layout corpus of three short recordings, encoded by `tts encode`."""
    root = tmp_path_factory.mktemp("ljspeech")
    (root / "wavs").mkdir()
    texts = ["Hello there, my friend.", "It is a nice day.", "Welcome back home."]
    for i in range(len(texts)):
        voice(root / "wavs" / f"LJ001-{i:04d}.wav", 0.4 + 0.1 * i)
    (root / "metadata.csv").write_text("".join(f"LJ001-{i:04d}|{t}|{t}\n" for i, t in enumerate(texts)))
    codes = root / "codes.safetensors"
    assert main(["encode", "--corpus", str(root), "--codec-weights", str(files["codec"]), "--output", str(codes)]) == 0
    return codes


def fine_tune(files, corpus) -> list[str]:
    return ["train", "--model", str(files["model"]), "--data.corpus", str(corpus), "--data.language", "en",
            "--data.batch_size", "2", "--optimizer.warmup_steps", "1", "--trainer.progress_bar", "false",
            "--trainer.limit_val_batches", "0"]  # fmt: skip


def test_fine_tuning_resumes_exactly_and_keeps_the_front_end(files, ljspeech_codes, tmp_path, monkeypatch):
    def command(output, steps):
        return [*fine_tune(files, ljspeech_codes), "--output", output, "--trainer.max_steps", steps]

    check_resume(main, command, lambda output: ["--model", output], tmp_path, monkeypatch, total=4, stop=2)
    config = json.loads(next(tmp_path.rglob("config.json")).read_text(encoding="utf-8"))
    assert config["tokenizer"] == "vallex" and config["symbols"] == VallexTokenizer(BPE).symbols


@pytest.mark.slow
def test_fine_tuning_with_ddp_on_two_cpu_processes(files, ljspeech_codes, tmp_path):
    args = [*fine_tune(files, ljspeech_codes), "--output", str(tmp_path / "out"), "--trainer.max_steps", "2"]
    args += ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "longseq.speech.cli", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert longseq.from_pretrained(tmp_path / "out").config.tokenizer == "vallex"


def _other_family(tmp_path: Path) -> Path:
    path = tmp_path / "other.pt"
    torch.save({"model": longseq.from_pretrained("valle2-tiny").state_dict()}, path)
    return path


def _foreign_bpe(tmp_path: Path) -> Path:
    spec = json.loads(BPE.read_text(encoding="utf-8"))
    spec["pre_tokenizer"] = {"type": "ByteLevel"}
    (tmp_path / "bpe.json").write_text(json.dumps(spec), encoding="utf-8")
    return tmp_path / "bpe.json"


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_speech", "nothing to pronounce"),
        ("korean", "Hangul letters"),
        ("long_prompt", "use at most 15 s"),
        ("short_prompt", "needs at least 1 s"),
        ("bad_tokenizer", "not VALL-E X's tokenizer"),
        ("other_family", "is not a VALL-E X checkpoint"),
        ("vocos_without_weights", "--vocoder vocos and --vocoder-weights"),
        ("bad_prompt_file", "is not a voice prompt"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(case, message, files, tmp_path, capsys):
    out = tmp_path / "out.wav"
    model = ["--model", str(files["model"]), "--codec-weights", str(files["codec"])]
    argv = {
        "no_speech": lambda: synth_args(files, out, "--text", "?! ..."),
        "korean": lambda: synth_args(files, out, "--text", "안녕하세요", "--language", "auto"),
        "long_prompt": lambda: ["prompt", *model, "--audio", str(voice(tmp_path / "v.wav", 16)), "--text", "Hi."],
        "short_prompt": lambda: ["prompt", *model, "--audio", str(voice(tmp_path / "v.wav", 0.5)), "--text", "Hi."],
        "bad_tokenizer": lambda: [
            "convert",
            "--vallex",
            str(VALLEX),
            "--tokenizer",
            str(_foreign_bpe(tmp_path)),
        ],
        "other_family": lambda: ["convert", "--vallex", str(_other_family(tmp_path)), "--tokenizer", str(BPE)],
        "vocos_without_weights": lambda: synth_args(files, out, "--text", "Hi.", "--vocoder", "vocos"),
        "bad_prompt_file": lambda: synth_args(files, out, "--text", "Hi.", "--prompt", str(files["voice"])),
    }[case]()
    if argv[0] == "prompt":
        argv += ["--output", str(tmp_path / "voice.npz")]
    if argv[0] == "convert":
        argv += ["--output", str(tmp_path / "converted"), "--n-heads", "4"]
    before = set(tmp_path.iterdir())
    assert main(argv) == 2
    assert message in one_line_error(capsys)
    assert set(tmp_path.iterdir()) == before
