import json

import numpy as np
import pytest
import soundfile as sf

from longseq.core.io import InputError
from longseq.speech.data.espeak import book_sentences, build_corpus, make_voices, read_voices
from longseq.speech.data.manifest import read_manifest
from longseq.speech.text.tokenizer import TextTokenizer


def test_book_sentences_fit_the_char_tokenizer():
    sentences = book_sentences()
    assert len(sentences) > 500 and len(set(sentences)) == len(sentences)
    tok = TextTokenizer()
    for s in sentences:
        tok.encode(s)
        assert 3 <= len(s.split()) <= 14 and s[-1] in ".!?"


def test_voices_are_distinct_and_deterministic():
    voices = make_voices(30, seed=1)
    assert len({(v.accent, v.variant) for v in voices}) == 30
    assert make_voices(30, seed=1) == voices != make_voices(30, seed=2)
    with pytest.raises(InputError, match="speakers must be between"):
        make_voices(0)


def test_build_corpus_splits_and_audio(tmp_path):
    manifest = build_corpus(
        tmp_path, speakers=3, sentences_per_speaker=2, heldout_speakers=1, heldout_sentences=1, seed=3
    )
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == 3 * 2 + 1
    assert [r["split"] for r in rows].count("test_sentence") == 1
    heldout = {r["speaker"] for r in rows if r["split"] != "train"}
    assert heldout == {"spk002"} and all(r["speaker"] != "spk002" for r in rows if r["split"] == "train")
    test_text = next(r["text"] for r in rows if r["split"] == "test_sentence")
    assert all(r["text"] != test_text for r in rows if r["split"] == "train")
    info = sf.info(tmp_path / rows[0]["audio"])
    assert info.samplerate == 24_000 and info.channels == 1 and info.duration > 0.5
    utterances = read_manifest(tmp_path)
    assert [u.text for u in utterances] == [r["text"] for r in rows]
    assert set(read_voices(tmp_path)) == {"spk000", "spk001", "spk002"}


def test_build_corpus_is_the_same_with_parallel_workers(tmp_path):
    options = {"speakers": 3, "sentences_per_speaker": 3, "heldout_speakers": 1, "heldout_sentences": 1, "seed": 4}
    serial = build_corpus(tmp_path / "serial", **options).read_text()
    parallel = build_corpus(tmp_path / "parallel", workers=3, **options).read_text()
    assert parallel == serial
    with pytest.raises(InputError, match="workers must be at least 1"):
        build_corpus(tmp_path / "none", workers=0, **options)
    assert not (tmp_path / "none").exists()
    for row in map(json.loads, serial.splitlines()):
        assert (tmp_path / "parallel" / row["audio"]).read_bytes() == (tmp_path / "serial" / row["audio"]).read_bytes()


def test_ljspeech_layout(tmp_path):
    (tmp_path / "wavs").mkdir()
    sf.write(tmp_path / "wavs" / "LJ001-0001.wav", np.zeros(2400, np.float32), 22_050)
    (tmp_path / "metadata.csv").write_text("LJ001-0001|Printing, in 1 sense|Printing, in one sense\n")
    [utt] = read_manifest(tmp_path)
    assert utt.text == "Printing, in one sense" and utt.speaker == "LJ" and utt.audio.is_file()


def test_libritts_layout(tmp_path):
    chapter = tmp_path / "train-clean-100" / "19" / "198"
    chapter.mkdir(parents=True)
    for utt in ("19_198_000000_000000", "19_198_000000_000001"):
        sf.write(chapter / f"{utt}.wav", np.zeros(2400, np.float32), 24_000)
        (chapter / f"{utt}.normalized.txt").write_text(f"text of {utt}\n")
    utterances = read_manifest(tmp_path)
    assert [u.speaker for u in utterances] == ["19", "19"]
    assert utterances[1].text == "text of 19_198_000000_000001"


def test_not_a_corpus(tmp_path):
    with pytest.raises(InputError, match="is not a corpus"):
        read_manifest(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"text": "no audio"}\n')
    with pytest.raises(InputError, match="metadata.jsonl:1"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("metadata.jsonl", b"\xff\xfe\x00 binary", "not UTF-8 text"),
        ("metadata.jsonl", b'{"audio": 3, "text": "x"}\n', "must be strings"),
        ("metadata.jsonl", b'["a list"]\n', "metadata.jsonl:1"),
        ("metadata.csv", b"\xff\xfe|\x00\x01\n", "not UTF-8 text"),
        ("metadata.csv", b"a|" + b"x" * 200_000 + b"\n", "field larger than field limit"),
    ],
)
def test_unreadable_manifests_are_one_line_input_errors(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_manifest(tmp_path)
