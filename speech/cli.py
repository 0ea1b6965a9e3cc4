"""`tts`: build a corpus, encode audio with a codec, train, and synthesize speech.

    tts corpus --out data/espeak
    tts encode --corpus data/espeak --codec examples/speech_model/codec --out data/espeak/codes.safetensors

Flags may be written with dashes or underscores (``--prompt-audio`` = ``--prompt_audio``).
"""

from __future__ import annotations

import sys
from typing import Literal

from longseq.core.cli import run


def corpus(
    out: str,
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
        out: output directory (wavs/, speakers.json, metadata.jsonl).
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
        out,
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

    from longseq.core.io import InputError, atomic_output
    from longseq.speech.audio import load_audio
    from longseq.speech.codecs import load_codec
    from longseq.speech.data.codes import encode_corpus
    from longseq.speech.data.manifest import read_manifest

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


def train(
    model: str,
    corpus: str,
    out: str,
    codec: str | None = None,
    codec_weights: str | None = None,
    group_size: int | None = None,
    tokenizer: Literal["chars", "bytes", "phonemes"] | None = None,
    steps: int = 2000,
    batch_size: int = 16,
    lr: float = 1e-3,
    warmup_steps: int = 100,
    weight_decay: float = 0.1,
    max_seconds: float = 10.0,
    segment_seconds: float = 1.0,
    pair_probability: float = 0.5,
    accelerator: str = "auto",
    devices: int = 1,
    strategy: str = "auto",
    checkpoint_every: int = 500,
    val_every: int | None = None,
    val_batches: int = 4,
    resume: bool = False,
    progress_bar: bool | None = None,
    seed: int = 0,
) -> None:
    """Train a codec or a speech language model with Lightning (resumable), and save it to --out.

    The model's type decides what is trained: a mel codec (``mel-24k``, ``mel-tiny``) or CLaM-TTS's Mel-VAE
    (``mel-vae``, ``mel-vae-tiny``) learns from audio crops; VALL-E 2 (``valle2-small``, ``valle2-tiny``,
    ``valle-x``) and CLaM-TTS (``clam-tts-small``, ``clam-tts-tiny``; its codec must be a Mel-VAE) from text and
    codec codes; SpeechSSM (``speechssm-small``, ``speechssm-tiny``) from fixed-length segments of codes.

    Args:
        model: a preset name (fresh weights) or a checkpoint directory (fine-tune).
        corpus: an audio corpus (directory or manifest; ours, LJSpeech or LibriTTS layout), or for language
            models a corpus encoded by ``tts encode`` (.safetensors).
        out: output directory: the trained model, ``checkpoints/`` (Lightning, resumable) and ``logs/``.
        codec: codec for language models trained on audio (default: the model's); a codec directory is
            copied into the output.
        codec_weights: EnCodec weights file or directory (default: the torch hub cache).
        group_size: VALL-E 2 group size G (1, 2, 4, 8); from a checkpoint, adds fresh group layers.
        tokenizer: VALL-E 2 text front end (default: the model's): characters, UTF-8 bytes, or espeak-ng
            phonemes (what VALL-E uses; much easier for a small model to learn); from a checkpoint, the text
            embeddings are rebuilt for it, keeping the rows of the symbols both alphabets share.
        steps: optimizer steps.
        batch_size: utterances (or audio crops) per step.
        lr: peak learning rate (cosine schedule with linear warm-up).
        warmup_steps: warm-up steps.
        weight_decay: AdamW weight decay (codecs: none).
        max_seconds: language models see at most this much of each utterance.
        segment_seconds: codec training crop length.
        pair_probability: VALL-E 2 and CLaM-TTS: share of training items that are two utterances of one speaker in a row
            (the prompted-synthesis setting: the end of speech only after the second).
        accelerator: auto, cpu, gpu.
        devices: devices (CPU: processes) per node.
        strategy: auto, ddp or fsdp.
        checkpoint_every: Lightning checkpoint interval in steps.
        val_every: validate on held-out speakers every n steps (default: each epoch; with pairs, the run is one
            epoch).
        val_batches: validation batches per validation.
        resume: continue from ``<out>/checkpoints/last.ckpt`` exactly where it stopped.
        progress_bar: show a progress bar (default: only on a terminal; otherwise log lines).
        seed: data order and initialisation seed.
    """
    from longseq.core.io import InputError
    from longseq.speech.tasks.train import TrainOptions, train_model

    if not 0.0 <= pair_probability <= 1.0:
        raise InputError(f"--pair-probability must lie in [0, 1]; got {pair_probability}")
    options = TrainOptions(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        max_seconds=max_seconds,
        segment_seconds=segment_seconds,
        pair_probability=pair_probability,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        checkpoint_every=checkpoint_every,
        val_every=val_every,
        val_batches=val_batches,
        resume=resume,
        progress_bar=progress_bar,
        seed=seed,
    )
    overrides = {"group_size": group_size, "tokenizer": tokenizer}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    path = train_model(
        model, corpus, out, codec=codec, codec_weights=codec_weights, overrides=overrides, options=options
    )
    print(f"wrote {path}")


def synth(
    text: str | None = None,
    out: str = "tts_output.wav",
    model: str | None = None,
    text_file: str | None = None,
    prompt_audio: str | None = None,
    prompt_text: str | None = None,
    seed: int | None = None,
    device: str = "cpu",
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
        out: output WAV file (written atomically).
        model: a trained checkpoint directory (default: the bundled model in examples/speech_model).
        text_file: read the text from this file instead.
        prompt_audio: a voice prompt (about 3 s of speech, 1-10 s; any rate, stereo is downmixed).
        prompt_text: the prompt's transcript (required with --prompt-audio).
        seed: random seed (default: random).
        device: cpu or cuda.
        max_seconds: stop generating a sentence after this much audio (long text is spoken sentence by sentence).
        top_p: nucleus sampling mass (0: greedy before the repetition check).
        top_k: keep at most this many codes (0: no cap).
        temperature: logit temperature.
        ras: Repetition Aware Sampling (VALL-E 2); --ras false gives plain nucleus sampling.
        ras_window: RAS window K.
        ras_threshold: RAS threshold t_r.
        ras_variant: paper (r > t_r) or common (r >= t_r with a top-k cap, as CosyVoice).
        sample_rate: resample the output to this rate (default: the codec's).
        spectrogram: also write a spectrogram PNG here.
        codec_weights: EnCodec weights file or directory (EnCodec models; default: the torch hub cache).
        minutes: continue --prompt-audio (or start from nothing) for this many minutes (0-60; SpeechSSM models).
    """
    from pathlib import Path

    import torch

    from longseq.core.io import InputError
    from longseq.speech.audio import resample, save_audio
    from longseq.speech.models.sampling import SamplingConfig
    from longseq.speech.synthesis import load_model_and_codec, save_spectrogram, synthesize

    if minutes is None and (text is None) == (text_file is None):
        raise InputError("give exactly one of --text and --text-file")
    if text_file is not None:
        if not Path(text_file).is_file():
            raise InputError(f"text file not found: {text_file}")
        text = Path(text_file).read_text(encoding="utf-8")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but CUDA is not available")
    if sample_rate is not None and sample_rate < 1000:
        raise InputError(f"sample rate must be at least 1000 Hz; got {sample_rate}")
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
            model, out, minutes, text=text, text_file=text_file, prompt_audio=prompt_audio, prompt_text=prompt_text,
            seed=seed, device=device, sampling=sampling, sample_rate=sample_rate, spectrogram=spectrogram,
            codec_weights=codec_weights,
        )  # fmt: skip
        return
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
    save_audio(out, resample(result.wav, result.sample_rate, rate), rate)
    if spectrogram is not None:
        save_spectrogram(spectrogram, result.wav, result.sample_rate, title=text[:60])
    print(f"wrote {out}: {result.seconds:.2f} s of audio in {result.elapsed:.2f} s (real-time factor {result.rtf:.2f})")


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
    return run(
        {"corpus": corpus, "encode": encode, "train": train, "synth": synth},
        _dashes_to_underscores(list(argv)),
        prog="tts",
    )


if __name__ == "__main__":
    sys.exit(main())
