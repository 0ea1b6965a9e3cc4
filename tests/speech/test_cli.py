import json
import shutil

import pytest
from safetensors.torch import load_file

from speech.cli import main
from speech.data.codes import EncodedCorpus

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


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


@needs_espeak
def test_corpus(tiny_corpus):
    rows = (tiny_corpus / "metadata.jsonl").read_text().splitlines()
    assert len(rows) == 5 and json.loads(rows[0])["speaker"] == "spk000"


@needs_espeak
def test_encode_corpus_with_mel_codec(tiny_corpus, tmp_path):
    from speech.codecs.mel import MelCodec, preset

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
