"""Text (+ an optional voice prompt) -> waveform with a codec language model, timed (real-time factor).

The model continues the acoustic prompt while speaking the prompt's transcript followed by the new text
(VALL-E's zero-shot recipe); without a prompt it speaks the text in a voice of its choosing.

Long text is spoken sentence by sentence (a sentence longer than `MAX_SENTENCE_CHARS` is cut at commas, then
at spaces), because the model was trained on single utterances of at most a few seconds and drifts or babbles
far beyond them. Every sentence gets the same voice prompt; without one, the first sentence's speech becomes
the prompt of the others, so the voice stays the same throughout.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from longseq.core.checkpoint import CheckpointError
from longseq.core.io import InputError
from longseq.speech.codecs import Codec, load_codec
from longseq.speech.models.sampling import SamplingConfig
from longseq.speech.prompts import VoicePrompt, make_prompt, prompt_codes
from longseq.speech.text.vallex import VallexTokenizer, detect_language

MAX_PROMPT_SECONDS = 10.0
# The AR stops after this many seconds per text token at most (lifeiteng/vall-e: 16 frames per phoneme
# at 75 Hz, 0.21 s), whatever --max-seconds allows: a loop cannot run on for long.
SECONDS_PER_TOKEN_LIMIT = 0.25
# ... and does not stop before this many seconds per text token (about half of espeak-ng's and a typical
# reader's pace): a weak model, or a prompt unlike its training voices, otherwise may end the speech at once.
SECONDS_PER_TOKEN_MIN = 0.03
# No sentence is generated for longer than this, whatever is asked: the KV caches grow with the length, and the
# models were trained on utterances of about 10 s.
MAX_SECONDS = 60.0
# Sentences longer than this are cut (about 8 s at a reading pace; training utterances are at most 10 s).
MAX_SENTENCE_CHARS = 120
SENTENCE_PAUSE_SECONDS = 0.3


@dataclass(kw_only=True)
class Synthesis:
    wav: torch.Tensor  # (1, n) float at sample_rate
    sample_rate: int
    codes: torch.Tensor  # (n_q, t)
    elapsed: float  # seconds of compute (generation + decoding)

    @property
    def seconds(self) -> float:
        return self.wav.shape[-1] / self.sample_rate

    @property
    def rtf(self) -> float:
        """Real-time factor: compute time / audio duration (< 1 is faster than real time)."""
        return self.elapsed / self.seconds if self.seconds > 0 else math.inf


def bundled_model_dir() -> Path:
    """The model trained by the project and shipped in ``examples/speech_model`` (source checkouts)."""
    return Path(__file__).resolve().parents[1] / "examples" / "speech_model"


def load_model_and_codec(model: str | os.PathLike | None, *, codec_weights=None, device="cpu"):
    """A speech language model (anything `longseq.from_pretrained` opens; default: the bundled model) and the
    codec it names (a relative codec directory lies inside the model's), both in eval mode on ``device``."""
    from longseq.core.registry import from_pretrained

    name = model if model is not None else bundled_model_dir()
    lm = from_pretrained(name)
    if not hasattr(lm, "generate") or not hasattr(lm.config, "codec"):
        raise CheckpointError(f"{name} holds a {type(lm).__name__}, not a text-to-speech model")
    root = Path(name) if Path(name).is_dir() else None
    codec = load_codec(lm.config.codec, encodec_weights=codec_weights, root=root)
    if codec.n_codebooks < lm.config.n_codebooks or codec.codebook_size != lm.config.codebook_size:
        raise CheckpointError(
            f"codec {lm.config.codec!r} gives {codec.n_codebooks} codebooks of {codec.codebook_size}; the model "
            f"needs {lm.config.n_codebooks} of {lm.config.codebook_size}"
        )
    if hasattr(lm, "check_codec"):  # models that quantize with their codec's codebooks (CLaM-TTS)
        lm.check_codec(codec)
    return lm.to(device), codec.to(device)


def encode_prompt(codec: Codec, path: str | os.PathLike, n_codebooks: int) -> torch.Tensor:
    """A voice prompt file -> codes (1, n_codebooks, t); refuses non-audio, too short, silent or too long."""
    return prompt_codes(codec, path, n_codebooks, max_seconds=MAX_PROMPT_SECONDS)


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """``text`` as sentences of at most ``max_chars`` characters (cut at , ; : then at spaces), none empty."""
    pieces = []
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        clauses = re.split(r"(?<=[,;:])\s+", sentence)
        pieces += _pack([part for c in clauses for part in ([c] if len(c) <= max_chars else c.split())], max_chars)
    # Punctuation alone ("...", "-") is no sentence (a phoneme front end has nothing to say for it): it joins
    # the words before it, or after it at the start.
    sentences, lead = [], ""
    for piece in filter(None, pieces):
        if any(c.isalnum() for c in piece):
            sentences.append(f"{lead} {piece}".lstrip())
            lead = ""
        elif sentences:
            sentences[-1] += " " + piece
        else:
            lead = f"{lead} {piece}".lstrip()
    return sentences or ([lead] if lead else [])


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Greedily join consecutive ``parts`` with spaces into runs of at most ``max_chars`` (a longer part alone)."""
    runs, run = [], ""
    for part in parts:
        if run and len(run) + 1 + len(part) > max_chars:
            runs.append(run)
            run = part
        else:
            run = f"{run} {part}" if run else part
    return [*runs, run]


@dataclass(kw_only=True)
class _Prompt:
    """The voice a sentence continues: codes (1, n_q, t) and what they say, as text (re-tokenized with each
    sentence: chars, phonemes) or as ids with their languages (VALL-E X: `VoicePrompt`)."""

    codes: torch.Tensor
    text: str | None = None
    voice: VoicePrompt | None = None


@torch.no_grad()
def synthesize(
    model,
    codec: Codec,
    text: str,
    *,
    prompt_audio: str | os.PathLike | None = None,
    prompt_text: str | None = None,
    prompt: VoicePrompt | None = None,
    language: str | None = None,
    long_text: str = "fixed-prompt",
    vocoder=None,
    sampling: SamplingConfig | None = None,
    max_seconds: float = 20.0,
    min_seconds_per_token: float = SECONDS_PER_TOKEN_MIN,
    seed: int | None = None,
) -> Synthesis:
    """Speak ``text``, sentence by sentence; with ``prompt_audio`` (and its transcript ``prompt_text``) or a
    saved ``prompt`` in that voice.

    ``language`` (VALL-E X front end only): auto, en, zh, ja or mix; auto detects it once for the whole text.
    ``long_text``: ``fixed-prompt`` gives every sentence the same prompt (without one, the first sentence's
    speech); ``sliding-window`` (VALL-E X's) prompts each next sentence, with probability 1/2, by the one before
    it, else by the original prompt. ``vocoder`` (an object with ``decode(codes)``, e.g. `VocosDecoder`)
    replaces the codec's decoder. Each sentence lasts at least ``min_seconds_per_token`` per token (0: no
    floor; EOS may end it at once) and at most `SECONDS_PER_TOKEN_LIMIT` per token or ``max_seconds``.
    Sentences are joined by short pauses.
    """
    if not hasattr(model.config, "text_tokenizer"):
        raise InputError(f"a {type(model).__name__} model continues speech without text: give --minutes")
    device = next(model.parameters()).device
    tokenizer = model.config.text_tokenizer()
    vallex = isinstance(tokenizer, VallexTokenizer)
    if language is not None and not vallex:
        raise InputError(f"--language is for VALL-E X's text front end; this model's tokenizer is {tokenizer.kind}")
    if prompt is not None and (prompt_audio is not None or prompt_text):
        raise InputError("give a saved --prompt or --prompt-audio with --prompt-text, not both")
    if prompt is not None and not vallex:
        raise InputError("saved prompts hold VALL-E X text ids; this model speaks through another tokenizer")
    if prompt_audio is not None and not (prompt_text and prompt_text.strip()):
        raise InputError("a voice prompt needs its transcript (--prompt-text): the model continues it")
    if prompt_audio is None and prompt_text:
        raise InputError("--prompt-text was given without --prompt-audio")
    if not 0 < max_seconds <= MAX_SECONDS:
        raise InputError(f"max seconds must lie in (0, {MAX_SECONDS:g}] (one sentence); got {max_seconds}")
    if min_seconds_per_token < 0:
        raise InputError(f"the duration floor must not be negative; got {min_seconds_per_token}")
    if long_text not in ("fixed-prompt", "sliding-window"):
        raise InputError(f"the long-text mode must be fixed-prompt or sliding-window; got {long_text!r}")
    if vallex:
        language = language or "auto"
        tokenizer.encode(text, language)  # every check before anything is generated
        if language == "auto":
            language = detect_language(text.replace("\n", "").strip(" "))
    else:
        tokenizer.encode(text)
    start = time.perf_counter()
    first = None
    if prompt is not None:
        first = _Prompt(codes=prompt.codes.to(device), voice=prompt)
    elif prompt_audio is not None and vallex:
        voice = make_prompt(codec, tokenizer, prompt_audio, prompt_text, n_codebooks=model.config.n_codebooks)
        first = _Prompt(codes=voice.codes, voice=voice)
    elif prompt_audio is not None:
        first = _Prompt(codes=encode_prompt(codec, prompt_audio, model.config.n_codebooks), text=prompt_text)
    sampling = sampling or SamplingConfig()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.randint(2**31, ())))
    decoder = vocoder or codec
    pause = torch.zeros(1, round(SENTENCE_PAUSE_SECONDS * codec.sample_rate), device=device)
    wavs, codes = [], []
    current = first
    # Tagged (mix) text is spoken whole: a cut inside a [EN]..[EN] pair would leave both halves untagged.
    sentences = [" ".join(text.split())] if language == "mix" else split_sentences(text)
    for sentence in tqdm(sentences, desc="synthesizing", unit="sentence", disable=len(sentences) < 3):
        ids, languages, n_target = _text_ids(tokenizer, sentence, current, language)
        spoken = _speak(
            model, ids, languages, n_target, current, sampling, generator,
            max_seconds=max_seconds, min_seconds_per_token=min_seconds_per_token, frame_rate=codec.frame_rate,
        )  # fmt: skip
        said = _Prompt(codes=spoken, text=sentence)
        if vallex:  # VALL-E X keeps the prompt language of the first prompt (none: the text's, mix: en)
            tag = first.voice.language if first is not None else ("en" if language == "mix" else language)
            said.voice = VoicePrompt(codes=spoken, text_ids=ids[len(ids) - n_target :], language=tag)
        if long_text == "sliding-window":
            slide = torch.rand((), generator=generator, device=device) < 0.5
            current = said if slide else first
        elif current is None:  # the first sentence sets the voice of the rest
            current = first = said
        wav = decoder.decode(spoken)[0]
        wavs += [pause, wav] if wavs else [wav]
        codes.append(spoken[0])
    return Synthesis(
        wav=torch.cat(wavs, dim=-1).cpu(),
        sample_rate=codec.sample_rate,
        codes=torch.cat(codes, dim=-1).cpu(),
        elapsed=time.perf_counter() - start,
    )


def _text_ids(tokenizer, text: str, prompt: _Prompt | None, language: str | None):
    """The ids (L,) the model reads (the prompt's transcript, then ``text``), their languages (L,) or None, and
    how many of them are ``text``'s.

    VALL-E X (``generate_audio``): the saved prompt ids, all in the prompt's language, then the target's ids,
    each in its own language. Other tokenizers: the prompt's transcript and the text joined by a space.
    """
    if isinstance(tokenizer, VallexTokenizer):
        target = tokenizer.encode(text, language)
        if prompt is None:
            return target.ids, target.language_ids, len(target.ids)
        voice = prompt.voice
        return voice.text_ids + target.ids, voice.language_ids + target.language_ids, len(target.ids)
    target = tokenizer.encode(text)
    ids = target if prompt is None else tokenizer.encode(prompt.text + " " + text)
    return ids, None, len(target)


def _speak(
    model, ids, languages, n_target, prompt, sampling, generator, *, max_seconds, min_seconds_per_token, frame_rate
) -> torch.Tensor:
    """Codes (1, n_q, t) of one sentence (``n_target`` of the text ids), continuing ``prompt`` if given."""
    device = generator.device
    limit = min(max_seconds, SECONDS_PER_TOKEN_LIMIT * n_target)
    max_frames = max(1, int(limit * frame_rate))
    min_frames = min(max_frames, int(min_seconds_per_token * n_target * frame_rate))
    # Only VALL-E X's front end gives languages (models without language tables take no such argument).
    extra = {} if languages is None else {"languages": torch.tensor([languages], device=device)}
    codes = model.generate(
        torch.tensor([ids], device=device),
        None if prompt is None else prompt.codes,
        max_frames=max_frames,
        min_frames=min_frames,
        sampling=sampling,
        generator=generator,
        **extra,
    )
    if codes.shape[-1] == 0:
        raise InputError("the model ended the speech before it began (EOS first); try another --seed or prompt")
    return codes


def write_spectrogram(path: str | os.PathLike, wav: torch.Tensor, sample_rate: int, *, title: str = "") -> None:
    """A log-magnitude spectrogram of (1, n) audio as a PNG at ``path`` (a temporary path of `atomic_output`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_fft, hop = 1024, 256
    spec = torch.stft(wav.reshape(-1), n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
    db = 20 * torch.log10(spec.clamp_min(1e-5))
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    extent = (0, wav.shape[-1] / sample_rate, 0, sample_rate / 2000)
    ax.imshow(db.numpy(), origin="lower", aspect="auto", extent=extent, vmin=float(db.max()) - 80, cmap="magma")
    ax.set(xlabel="seconds", ylabel="kHz", title=title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
