"""`tts`: build a corpus, encode audio with a codec, train, and synthesize speech.

    tts corpus --output data/espeak
    tts encode --corpus data/espeak --codec examples/speech_model/codec --output data/espeak/codes.safetensors
    tts train --model valle2-small --data.corpus data/espeak/codes.safetensors --codec ... --output runs/tts
    tts synth --text "Hello there." --output hello.wav

Flags take dashes or underscores (``--prompt-audio`` = ``--prompt_audio``).
"""

from __future__ import annotations

import sys
from typing import Literal

from longseq.core.cli import run
from longseq.core.train import OptimizerConfig, TrainerConfig
from longseq.speech.data.config import SpeechDataConfig

MAX_SAMPLE_RATE = 192_000


def corpus(
    output: str,
    speakers: int = 40,
    sentences_per_speaker: int = 50,
    heldout_speakers: int = 4,
    heldout_sentences: int = 20,
    sample_rate: int = 24_000,
    seed: int = 0,
    workers: int = 1,
) -> None:
    """Build a multi-speaker text/audio corpus with espeak-ng (sentences from a bundled public-domain book).

    Args:
        output: output directory (wavs/, speakers.json, metadata.jsonl).
        speakers: number of voices (espeak-ng accents x variants with pitch and speed jitter).
        sentences_per_speaker: training sentences per voice.
        heldout_speakers: the last voices, kept out of the training split.
        heldout_sentences: sentences spoken only by the held-out voices.
        sample_rate: output sample rate.
        seed: chooses voices and sentences.
        workers: espeak-ng processes run at once (the corpus is the same for any number).
    """
    from longseq.speech.data.espeak import build_corpus

    path = build_corpus(
        output,
        speakers=speakers,
        sentences_per_speaker=sentences_per_speaker,
        heldout_speakers=heldout_speakers,
        heldout_sentences=heldout_sentences,
        sample_rate=sample_rate,
        seed=seed,
        workers=workers,
    )
    print(f"wrote {path}")


def encode(
    output: str,
    corpus: str | None = None,
    audio: str | None = None,
    codec: str = "encodec",
    codec_weights: str | None = None,
    device: str = "cpu",
) -> None:
    """Encode a corpus (for training) or one audio file into codec codes, saved as safetensors.

    Args:
        output: output ``.safetensors`` file (written atomically).
        corpus: a corpus directory or manifest (ours, LJSpeech or LibriTTS layout).
        audio: one audio file instead of a corpus.
        codec: ``encodec``, ``encodec-<kbps>kbps`` or a codec directory (a trained mel codec or Mel-VAE).
        codec_weights: the EnCodec weights file or its directory (default: the torch hub cache).
        device: cpu, cuda, cuda:1, mps.
    """
    import torch
    from safetensors.torch import save_file

    from longseq.core.io import InputError, atomic_output, check_not_overwriting, resolve_device
    from longseq.speech.audio import load_audio
    from longseq.speech.codecs import load_codec
    from longseq.speech.data.codes import encode_corpus
    from longseq.speech.data.manifest import read_manifest

    if (corpus is None) == (audio is None):
        raise InputError("give exactly one of --corpus and --audio")
    check_file_output(output, ".safetensors")
    check_not_overwriting(output, corpus, audio)
    device = resolve_device(device)
    model = load_codec(codec, encodec_weights=codec_weights).to(device)
    if audio is not None:
        codes = model.encode(load_audio(audio, model.sample_rate))[0].cpu()
        with atomic_output(output) as tmp:
            save_file({"codes": codes.to(torch.int64).contiguous()}, str(tmp), metadata={"codec": codec})
        print(f"wrote {output}: {codes.shape[0]} codebooks x {codes.shape[1]} frames")
        return
    encoded = encode_corpus(read_manifest(corpus), model, codec)
    encoded.save(output)
    print(f"wrote {output}: {len(encoded)} utterances")


def train(
    model: str,
    output: str,
    trainer: TrainerConfig = TrainerConfig(max_steps=2000),  # noqa: B008  (dataclass defaults: jsonargparse's groups)
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-3, warmup_steps=100),  # noqa: B008
    data: SpeechDataConfig = SpeechDataConfig(),  # noqa: B008
    codec: str | None = None,
    codec_weights: str | None = None,
    group_size: Literal[1, 2, 4, 8] | None = None,
    tokenizer: Literal["chars", "bytes", "phonemes"] | None = None,
) -> None:
    """Train a codec or a speech language model with Lightning, and save it to --output.

    The model's type decides what is trained: a mel codec (``mel-24k``, ``mel-tiny``) or CLaM-TTS's Mel-VAE
    (``mel-vae``, ``mel-vae-tiny``) learns from audio crops; VALL-E 2 (``valle2-small``, ``valle2-tiny``,
    ``valle-x``) and CLaM-TTS (``clam-tts-small``, ``clam-tts-tiny``; its codec must be a Mel-VAE) from text and
    codec codes; SpeechSSM (``speechssm-small``, ``speechssm-tiny``) from fixed-length segments of codes.
    Resume an interrupted run exactly with ``--trainer.checkpoint_dir DIR --trainer.resume last`` (the
    checkpoints must lie outside --output, which a failed run removes).

    Args:
        model: a preset name (fresh weights) or a checkpoint (fine-tune): our directory or a VALL-E X file.
        output: the new directory for the trained model (and its codec, when the codec is a directory).
        trainer: steps, devices, precision, checkpoints, resume, logging, seed.
        optimizer: AdamW and its cosine schedule with linear warm-up.
        data: the corpus, batch size and item lengths.
        codec: codec for language models (default: the model's): how an audio corpus is encoded, and what the
            model names for synthesis (a codec directory is copied into the output).
        codec_weights: EnCodec weights file or directory (default: the torch hub cache).
        group_size: VALL-E 2 group size G (1, 2, 4, 8); from a checkpoint, adds fresh group layers.
        tokenizer: VALL-E 2 text front end (default: the model's): characters, UTF-8 bytes, or espeak-ng
            phonemes (what VALL-E uses; much easier for a small model to learn); from a checkpoint, the text
            embeddings are rebuilt for it, keeping the rows of the symbols both alphabets share.
    """
    from longseq.speech.tasks.train import train_model

    overrides = {"group_size": group_size, "tokenizer": tokenizer}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    path = train_model(
        model,
        output,
        trainer=trainer,
        optimizer=optimizer,
        data=data,
        codec=codec,
        codec_weights=codec_weights,
        overrides=overrides,
    )
    print(f"wrote {path}")


def synth(
    text: str | None = None,
    output: str = "tts_output.wav",
    model: str | None = None,
    device: str = "cpu",
    text_file: str | None = None,
    prompt_audio: str | None = None,
    prompt_text: str | None = None,
    seed: int | None = None,
    max_seconds: float = 20.0,
    top_p: float = 0.8,
    top_k: int = 0,
    temperature: float = 1.0,
    ras: bool = True,
    ras_window: int = 10,
    ras_threshold: float = 0.1,
    ras_variant: Literal["paper", "common"] = "paper",
    sample_rate: int | None = None,
    spectrogram: str | None = None,
    codec_weights: str | None = None,
    minutes: float | None = None,
) -> None:
    """Synthesize speech from text, optionally in the voice of a short prompt recording; writes a WAV.

    With ``--minutes`` and a SpeechSSM model: continue the prompt (no text) for that long, in constant memory.
    Prints the audio duration and the real-time factor (compute time / audio time).

    Args:
        text: the text to speak.
        output: output WAV file (written atomically; never one of the inputs).
        model: a trained checkpoint (default: the bundled model in examples/speech_model).
        device: cpu, cuda, cuda:1, mps.
        text_file: read the text from this file instead.
        prompt_audio: a voice prompt (about 3 s of speech, 1-10 s; any rate, stereo is downmixed).
        prompt_text: the prompt's transcript (required with --prompt-audio).
        seed: random seed (default: random).
        max_seconds: stop generating a sentence after this much audio (at most 60; long text is spoken
            sentence by sentence).
        top_p: nucleus sampling mass (0: greedy before the repetition check).
        top_k: keep at most this many codes (0: no cap).
        temperature: logit temperature.
        ras: Repetition Aware Sampling (VALL-E 2); --ras false gives plain nucleus sampling.
        ras_window: RAS window K.
        ras_threshold: RAS threshold t_r.
        ras_variant: paper (r > t_r) or common (r >= t_r with a top-k cap, as CosyVoice).
        sample_rate: resample the output to this rate (default: the codec's).
        spectrogram: also write a spectrogram PNG here (both files appear together, or neither).
        codec_weights: EnCodec weights file or directory (EnCodec models; default: the torch hub cache).
        minutes: continue --prompt-audio (or start from nothing) for this many minutes (0-60; SpeechSSM models).
    """
    import contextlib

    from longseq.core.io import InputError, atomic_output, check_not_overwriting, resolve_device
    from longseq.speech.audio import resample, write_audio
    from longseq.speech.models.sampling import SamplingConfig
    from longseq.speech.synthesis import load_model_and_codec, synthesize, write_spectrogram

    if minutes is None and (text is None) == (text_file is None):
        raise InputError("give exactly one of --text and --text-file")
    for path, suffix in ((output, ".wav"), (spectrogram, ".png")):
        if path is not None:
            check_file_output(path, suffix)
            check_not_overwriting(path, prompt_audio, text_file)
    if spectrogram is not None:
        check_not_overwriting(spectrogram, output)
    if text_file is not None:
        text = read_text(text_file)
    device = resolve_device(device)
    if seed is not None and not 0 <= seed < 2**63:
        raise InputError(f"--seed must lie in [0, 2^63); got {seed}")
    if sample_rate is not None and not 1000 <= sample_rate <= MAX_SAMPLE_RATE:
        raise InputError(f"--sample-rate must lie in [1000, {MAX_SAMPLE_RATE}] Hz; got {sample_rate}")
    try:
        sampling = SamplingConfig(
            top_p=top_p,
            top_k=top_k,
            temperature=temperature,
            ras=ras,
            ras_window=ras_window,
            ras_threshold=ras_threshold,
            ras_variant=ras_variant,
        )
    except ValueError as err:
        raise InputError(str(err)) from None
    if minutes is not None:
        from longseq.speech.longform import synth_minutes

        synth_minutes(
            model, output, minutes, text=text, text_file=text_file, prompt_audio=prompt_audio,
            prompt_text=prompt_text, seed=seed, device=device, sampling=sampling, sample_rate=sample_rate,
            spectrogram=spectrogram, codec_weights=codec_weights,
        )  # fmt: skip
        return
    with contextlib.ExitStack() as outputs:
        # Both outputs are checked before any work, and appear together at the end.
        wav_file = outputs.enter_context(atomic_output(output))
        png_file = outputs.enter_context(atomic_output(spectrogram)) if spectrogram is not None else None
        lm, codec = load_model_and_codec(model, codec_weights=codec_weights, device=device)
        result = synthesize(
            lm,
            codec,
            text,
            prompt_audio=prompt_audio,
            prompt_text=prompt_text,
            sampling=sampling,
            max_seconds=max_seconds,
            seed=seed,
        )
        rate = sample_rate or result.sample_rate
        write_audio(wav_file, resample(result.wav, result.sample_rate, rate), rate)
        if png_file is not None:
            write_spectrogram(png_file, result.wav, result.sample_rate, title=text[:60])
    seconds = f"{result.seconds:.2f} s of audio in {result.elapsed:.2f} s (real-time factor {result.rtf:.2f})"
    print(f"wrote {output}: {seconds}")


def check_file_output(path: str, suffix: str) -> None:
    """Refuse an output file that is a directory or lacks ``suffix`` (a slip that would write the wrong thing)."""
    from pathlib import Path

    from longseq.core.io import InputError

    if Path(path).is_dir():
        raise InputError(f"{path} is a directory; give the {suffix} file to write")
    if Path(path).suffix.lower() != suffix:
        raise InputError(f"{path}: the output must be a {suffix} file")


def read_text(path: str) -> str:
    """A UTF-8 text file's contents; a missing, binary or empty file is an InputError."""
    from pathlib import Path

    from longseq.core.io import InputError

    if not Path(path).is_file():
        raise InputError(f"text file not found: {path}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    if "\x00" in text:
        raise InputError(f"{path} is a binary file, not text")
    return text


def main(argv: list[str] | None = None) -> int:
    return run({"corpus": corpus, "encode": encode, "train": train, "synth": synth}, argv, prog="tts")


if __name__ == "__main__":
    sys.exit(main())
