"""`tts`: build a corpus, encode audio with a codec, train, and synthesize speech.

    tts corpus --output data/espeak
    tts encode --corpus data/espeak --codec examples/speech_model/codec --output data/espeak/codes.safetensors
    tts train --model valle2-small --data.corpus data/espeak/codes.safetensors --codec ... --output runs/tts
    tts synth --text "Hello there." --output hello.wav

The released VALL-E X (English, Mandarin, Japanese):

    tts convert --vallex vallex-checkpoint.pt --tokenizer bpe_69.json --output vallex
    tts prompt --model vallex --audio voice.wav --text "What the voice says." --output voice.npz
    tts synth --model vallex --prompt voice.npz --text "Hello there." --language en --output hello.wav

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


def convert(vallex: str, tokenizer: str, output: str, n_heads: int = 16) -> None:
    """Convert the released VALL-E X (Plachtaa's vallex-checkpoint.pt and bpe_69.json) into our checkpoint directory.

    ``tts synth --model``, ``tts prompt --model``, ``tts train --model`` and ``longseq.from_pretrained`` open it.
    The directory holds the weights, the text front end (the alphabet of ``bpe_69.json``, checked to be VALL-E
    X's) and the codec settings (EnCodec 24 kHz at 6 kbps).

    Args:
        vallex: ``vallex-checkpoint.pt`` (read without running code from it).
        tokenizer: the release's ``utils/g2p/bpe_69.json``.
        output: the new checkpoint directory.
        n_heads: attention heads (not stored in the file; 16 in the release).
    """
    from pathlib import Path

    from longseq.core.checkpoint import CheckpointError
    from longseq.core.io import check_new_directory, check_not_overwriting, new_directory
    from longseq.core.registry import Source
    from longseq.speech.models.vallex import VALLEX
    from longseq.speech.text.vallex import VallexTokenizer

    check_not_overwriting(output, vallex, tokenizer)
    check_new_directory(output)
    front_end = VallexTokenizer(tokenizer)
    source = Source(Path(vallex))
    if not source.path.is_file():
        what = "a directory" if source.path.is_dir() else "no such file"
        raise CheckpointError(f"{vallex} is {what}: give the released vallex-checkpoint.pt")
    if not VALLEX.matches(source):
        raise CheckpointError(f"{vallex} is not a VALL-E X checkpoint ({{'model': state dict}} of ar_/nar_decoder)")
    model = VALLEX.load(source, n_heads=n_heads)
    if model.config.text_rows < front_end.vocab_size:
        rows, need = model.config.text_rows, front_end.vocab_size
        raise CheckpointError(f"{vallex} has {rows} text embedding rows; {tokenizer} needs {need}")
    model.config.symbols = front_end.symbols
    with new_directory(output):
        model.save_pretrained(output)
    print(f"wrote {output}: VALL-E X, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")


def prompt(
    audio: str,
    text: str,
    output: str,
    model: str,
    codec_weights: str | None = None,
    device: str = "cpu",
) -> None:
    """Save a voice prompt (.npz) for a VALL-E X model, which tts synth --prompt reuses.

    It holds the recording's EnCodec codes, its transcript's ids and language, in the ``.npz`` layout of VALL-E X's
    presets.

    Args:
        audio: 1-15 s of the voice (any rate; stereo is downmixed).
        text: what the recording says (its language is detected).
        output: the ``.npz`` file to write.
        model: the VALL-E X checkpoint directory (``tts convert``), whose codec encodes the recording.
        codec_weights: EnCodec weights file or directory (default: the torch hub cache).
        device: cpu, cuda, cuda:1, mps.
    """
    from longseq.core.io import InputError, atomic_output, check_not_overwriting, resolve_device
    from longseq.speech.prompts import make_prompt
    from longseq.speech.synthesis import load_model_and_codec
    from longseq.speech.text.vallex import VallexTokenizer

    check_file_output(output, ".npz")
    check_not_overwriting(output, audio)
    lm, codec = load_model_and_codec(model, codec_weights=codec_weights, device=resolve_device(device))
    tokenizer = lm.config.text_tokenizer()
    if not isinstance(tokenizer, VallexTokenizer):
        raise InputError(f"saved prompts are for VALL-E X models; {model} speaks through a {tokenizer.kind} tokenizer")
    voice = make_prompt(codec, tokenizer, audio, text, n_codebooks=lm.config.n_codebooks)
    with atomic_output(output) as tmp:
        voice.save(tmp)
    seconds = voice.codes.shape[-1] / codec.frame_rate
    print(f"wrote {output}: {seconds:.2f} s of {voice.language} speech, {len(voice.text_ids)} text tokens")


def synth(
    text: str | None = None,
    output: str = "tts_output.wav",
    model: str | None = None,
    device: str = "cpu",
    text_file: str | None = None,
    prompt_audio: str | None = None,
    prompt_text: str | None = None,
    prompt: str | None = None,
    language: Literal["auto", "en", "zh", "ja", "mix"] | None = None,
    long_text: Literal["fixed-prompt", "sliding-window"] = "fixed-prompt",
    seed: int | None = None,
    max_seconds: float = 20.0,
    top_p: float | None = None,
    top_k: int = 0,
    temperature: float = 1.0,
    ras: bool | None = None,
    ras_window: int = 10,
    ras_threshold: float = 0.1,
    ras_variant: Literal["paper", "common"] = "paper",
    sample_rate: int | None = None,
    spectrogram: str | None = None,
    codec_weights: str | None = None,
    vocoder: Literal["codec", "vocos"] = "codec",
    vocoder_weights: str | None = None,
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
        prompt: a saved voice prompt (``tts prompt``, or a VALL-E X preset ``.npz``) instead of --prompt-audio.
        language: VALL-E X models: auto (langid), en, zh, ja, or mix (text tagged [EN]..[EN], [ZH]..[ZH]).
        long_text: fixed-prompt (every sentence continues the same prompt) or sliding-window (VALL-E X's: each
            next sentence continues, with probability 1/2, the one before it).
        seed: random seed (default: random).
        max_seconds: stop generating a sentence after this much audio (at most 60; long text is spoken
            sentence by sentence).
        top_p: nucleus sampling mass (0: greedy before the repetition check; default 0.8, and 1 for VALL-E X
            models: the official sampling from the whole distribution).
        top_k: keep at most this many codes (0: no cap).
        temperature: logit temperature.
        ras: Repetition Aware Sampling (VALL-E 2; default on, and off for VALL-E X models as officially).
        ras_window: RAS window K.
        ras_threshold: RAS threshold t_r.
        ras_variant: paper (r > t_r) or common (r >= t_r with a top-k cap, as CosyVoice).
        sample_rate: resample the output to this rate (default: the codec's).
        spectrogram: also write a spectrogram PNG here (both files appear together, or neither).
        codec_weights: EnCodec weights file or directory (EnCodec models; default: the torch hub cache).
        vocoder: codec (the codec's own decoder) or vocos (EnCodec codes through Vocos, as VALL-E X decodes).
        vocoder_weights: Vocos's ``pytorch_model.bin`` (charactr/vocos-encodec-24khz) or its directory.
        minutes: continue --prompt-audio (or start from nothing) for this many minutes (0-60; SpeechSSM models).
    """
    import contextlib

    from longseq.core.io import InputError, atomic_output, check_not_overwriting, resolve_device
    from longseq.speech.audio import resample, write_audio
    from longseq.speech.codecs.encodec import EncodecCodec
    from longseq.speech.codecs.vocos import VocosDecoder
    from longseq.speech.models.sampling import SamplingConfig
    from longseq.speech.prompts import VoicePrompt
    from longseq.speech.synthesis import load_model_and_codec, synthesize, write_spectrogram

    if minutes is None and (text is None) == (text_file is None):
        raise InputError("give exactly one of --text and --text-file")
    for path, suffix in ((output, ".wav"), (spectrogram, ".png")):
        if path is not None:
            check_file_output(path, suffix)
            check_not_overwriting(path, prompt_audio, text_file, prompt)
    if spectrogram is not None:
        check_not_overwriting(spectrogram, output)
    if text_file is not None:
        text = read_text(text_file)
    device = resolve_device(device)
    if seed is not None and not 0 <= seed < 2**63:
        raise InputError(f"--seed must lie in [0, 2^63); got {seed}")
    if sample_rate is not None and not 1000 <= sample_rate <= MAX_SAMPLE_RATE:
        raise InputError(f"--sample-rate must lie in [1000, {MAX_SAMPLE_RATE}] Hz; got {sample_rate}")
    if (vocoder_weights is not None) != (vocoder == "vocos"):
        raise InputError("--vocoder vocos and --vocoder-weights (Vocos's pytorch_model.bin) go together")

    def sampling_for(official: bool) -> SamplingConfig:
        """The flags' sampling; unset top-p and RAS take the model's defaults (VALL-E X: its official ones)."""
        try:
            return SamplingConfig(
                top_p=top_p if top_p is not None else (1.0 if official else 0.8),
                top_k=top_k,
                temperature=temperature,
                ras=ras if ras is not None else not official,
                ras_window=ras_window,
                ras_threshold=ras_threshold,
                ras_variant=ras_variant,
            )
        except ValueError as err:
            raise InputError(str(err)) from None

    sampling_for(False)  # bad values are refused before any work
    if minutes is not None:
        if prompt is not None or language is not None or vocoder != "codec":
            raise InputError("--minutes continues speech with a SpeechSSM model; drop --prompt, --language, --vocoder")
        from longseq.speech.longform import synth_minutes

        synth_minutes(
            model, output, minutes, text=text, text_file=text_file, prompt_audio=prompt_audio,
            prompt_text=prompt_text, seed=seed, device=device, sampling=sampling_for(False), sample_rate=sample_rate,
            spectrogram=spectrogram, codec_weights=codec_weights,
        )  # fmt: skip
        return
    with contextlib.ExitStack() as outputs:
        # Both outputs are checked before any work, and appear together at the end.
        wav_file = outputs.enter_context(atomic_output(output))
        png_file = outputs.enter_context(atomic_output(spectrogram)) if spectrogram is not None else None
        lm, codec = load_model_and_codec(model, codec_weights=codec_weights, device=device)
        official = getattr(lm.config, "tokenizer", None) == "vallex"
        saved = None
        if prompt is not None:
            saved = VoicePrompt.load(prompt, n_codebooks=lm.config.n_codebooks, codebook_size=lm.config.codebook_size)
        decoder = None
        if vocoder == "vocos":
            if not isinstance(codec, EncodecCodec):
                raise InputError(f"Vocos decodes EnCodec codes; this model's codec is {lm.config.codec!r}")
            decoder = VocosDecoder(vocoder_weights, bandwidth=codec.bandwidth).to(device)
        result = synthesize(
            lm,
            codec,
            text,
            prompt_audio=prompt_audio,
            prompt_text=prompt_text,
            prompt=saved,
            language=language,
            long_text=long_text,
            vocoder=decoder,
            sampling=sampling_for(official),
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
    commands = [corpus, encode, train, convert, prompt, synth]
    return run({command.__name__: command for command in commands}, argv, prog="tts")


if __name__ == "__main__":
    sys.exit(main())
