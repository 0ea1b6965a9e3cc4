"""`tts`: build a corpus, encode audio with a codec, train, and synthesize speech.

    tts corpus --out data/espeak
    tts encode --corpus data/espeak --codec examples/speech_model/codec --out data/espeak/codes.safetensors

Flags may be written with dashes or underscores (``--prompt-audio`` = ``--prompt_audio``).
"""

from __future__ import annotations

import sys

from core.cli import run


def corpus(
    out: str,
    speakers: int = 40,
    sentences_per_speaker: int = 50,
    heldout_speakers: int = 4,
    heldout_sentences: int = 20,
    sample_rate: int = 24_000,
    seed: int = 0,
) -> None:
    """Build a multi-speaker text/audio corpus with espeak-ng (sentences from a bundled public-domain book).

    Args:
        out: output directory (wavs/, speakers.json, metadata.jsonl).
        speakers: number of voices (espeak-ng accents x variants with pitch and speed jitter).
        sentences_per_speaker: training sentences per voice.
        heldout_speakers: the last voices, kept out of the training split.
        heldout_sentences: sentences spoken only by the held-out voices.
        sample_rate: output sample rate.
        seed: chooses voices and sentences.
    """
    from speech.data.espeak import build_corpus

    path = build_corpus(
        out,
        speakers=speakers,
        sentences_per_speaker=sentences_per_speaker,
        heldout_speakers=heldout_speakers,
        heldout_sentences=heldout_sentences,
        sample_rate=sample_rate,
        seed=seed,
    )
    print(f"wrote {path}")


def encode(
    out: str,
    corpus: str | None = None,
    audio: str | None = None,
    codec: str = "encodec",
    codec_weights: str | None = None,
) -> None:
    """Encode a corpus (for training) or one audio file into codec codes, saved as safetensors.

    Args:
        out: output ``.safetensors`` file.
        corpus: a corpus directory or manifest (ours, LJSpeech or LibriTTS layout).
        audio: one audio file instead of a corpus.
        codec: ``encodec``, ``encodec-<kbps>kbps`` or a mel codec directory.
        codec_weights: the EnCodec weights file or its directory (default: the torch hub cache).
    """
    import torch
    from safetensors.torch import save_file

    from core.io import InputError, atomic_output
    from speech.audio import load_audio
    from speech.codecs import load_codec
    from speech.data.codes import encode_corpus
    from speech.data.manifest import read_manifest

    if (corpus is None) == (audio is None):
        raise InputError("give exactly one of --corpus and --audio")
    model = load_codec(codec, encodec_weights=codec_weights)
    if audio is not None:
        codes = model.encode(load_audio(audio, model.sample_rate))[0]
        with atomic_output(out) as tmp:
            save_file({"codes": codes.to(torch.int64).contiguous()}, str(tmp), metadata={"codec": codec})
        print(f"wrote {out}: {codes.shape[0]} codebooks x {codes.shape[1]} frames")
        return
    encoded = encode_corpus(read_manifest(corpus), model, codec)
    encoded.save(out)
    print(f"wrote {out}: {len(encoded)} utterances")


def _dashes_to_underscores(argv: list[str]) -> list[str]:
    """``--prompt-audio x`` -> ``--prompt_audio x`` (jsonargparse knows the underscore spelling only)."""
    fixed = []
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + eq + value
        fixed.append(arg)
    return fixed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run({"corpus": corpus, "encode": encode}, _dashes_to_underscores(list(argv)), prog="tts")


if __name__ == "__main__":
    sys.exit(main())
