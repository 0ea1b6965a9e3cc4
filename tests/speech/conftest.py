"""A tiny speech corpus that needs no espeak-ng: harmonic tones with a pitch per speaker and a syllable-rate
envelope, in our manifest format (two training speakers, one held out); and a tiny Mel-VAE codec trained on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

WORDS = ("alice", "rabbit", "queen", "garden", "tea", "cat", "door", "key", "hat")


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_corpus")
    (root / "wavs").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for speaker, pitch in enumerate((110.0, 160.0, 220.0)):
        for n in range(3):
            seconds = 1.0 + 0.3 * n
            t = np.arange(int(seconds * 24_000)) / 24_000
            tone = sum(np.sin(2 * np.pi * pitch * h * t) / h for h in range(1, 6))
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (3 + speaker) * t + rng.uniform(0, 6)) ** 2
            wav = (0.15 * tone * envelope + 0.005 * rng.standard_normal(len(t))).astype(np.float32)
            name = f"wavs/spk{speaker}_{n}.wav"
            sf.write(root / name, wav, 24_000)
            text = " ".join(rng.choice(WORDS, 3)).capitalize() + "."
            split = "train" if speaker < 2 else "test_speaker"
            rows.append({"audio": name, "text": text, "speaker": f"spk{speaker}", "split": split})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="session")
def quick_train(tmp_path_factory) -> list[str]:
    """`tts train` flags for a few steps of a tiny model in tests (logs in a temporary directory)."""
    return [
        *("--trainer.max_steps", "3", "--trainer.progress_bar", "false"),
        *("--trainer.log_dir", str(tmp_path_factory.mktemp("logs"))),
        *("--data.batch_size", "2", "--optimizer.warmup_steps", "1"),
    ]


@pytest.fixture(scope="session")
def mel_codec(tmp_path_factory):
    """An untrained mel-tiny codec (4 x 16 codes at 25 Hz) in a checkpoint directory."""
    from longseq.core.registry import from_pretrained

    out = tmp_path_factory.mktemp("mel") / "codec"
    from_pretrained("mel-tiny").save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def mel_vae_codec(synthetic_corpus, quick_train, tmp_path_factory):
    """A mel-vae-tiny codec (4 x 16 codes at 12.5 Hz) trained a few steps on the synthetic corpus."""
    from longseq.speech.cli import main

    out = tmp_path_factory.mktemp("mel_vae") / "vae"
    argv = ["train", "--model", "mel-vae-tiny", "--data.corpus", str(synthetic_corpus), "--output", str(out)]
    assert main([*argv, *quick_train]) == 0
    return out


@pytest.fixture(scope="session")
def encoded_corpus(synthetic_corpus, mel_codec, tmp_path_factory):
    """The synthetic corpus encoded by `mel_codec` (`tts encode`)."""
    from longseq.speech.cli import main

    out = tmp_path_factory.mktemp("codes") / "codes.safetensors"
    argv = ["encode", "--corpus", str(synthetic_corpus), "--codec", str(mel_codec), "--output", str(out)]
    assert main(argv) == 0
    return out
