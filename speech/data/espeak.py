"""A deterministic multi-speaker text/audio corpus spoken by espeak-ng (libespeak-ng from the espeakng-loader wheel).

Speakers are espeak-ng English accents x voice variants x pitch and speed settings; sentences come from a
bundled public-domain text (Lewis Carroll, *Alice's Adventures in Wonderland*, 1865). espeak-ng speaks
22.05 kHz mono 16-bit audio, the same on every run; we resample to the corpus rate.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import re
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from longseq.core.io import InputError, atomic_output
from longseq.speech import espeak_ng
from longseq.speech.audio import resample, save_audio
from longseq.speech.text.phonemes import phonemize
from longseq.speech.text.tokenizer import CHARS, normalize

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "Alex", "Annie", "Andy", "edward", "john", "linda", "steph", "robert",
)  # fmt: skip


@dataclass(kw_only=True)
class EspeakVoice:
    """One synthetic speaker: espeak-ng's voice ``{accent}+{variant}`` at ``pitch`` (0-99) and ``speed`` (wpm)."""

    name: str
    accent: str
    variant: str
    pitch: int
    speed: int

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"


def make_voices(n: int, *, seed: int = 0) -> list[EspeakVoice]:
    """``n`` distinct voices drawn deterministically from accents x variants, with jittered pitch and speed."""
    if not 1 <= n <= len(ACCENTS) * len(VARIANTS):
        raise InputError(f"speakers must be between 1 and {len(ACCENTS) * len(VARIANTS)}; got {n}")
    rng = random.Random(seed)
    pairs = [(a, v) for a in ACCENTS for v in VARIANTS]
    rng.shuffle(pairs)
    return [
        EspeakVoice(name=f"spk{i:03d}", accent=a, variant=v, pitch=rng.randint(25, 75), speed=rng.randint(140, 185))
        for i, (a, v) in enumerate(pairs[:n])
    ]


def book_sentences(*, min_words: int = 3, max_words: int = 14) -> list[str]:
    """Distinct sentences of the bundled book whose characters all fit the default char tokenizer."""
    text = resources.files("longseq.speech.data").joinpath("alice.txt").read_text(encoding="utf-8")
    text = re.sub(r"^\[.*?\]|CHAPTER [IVXL]+\.?.*", " ", text, flags=re.M)
    text = normalize(re.sub(r"[*_()\"]", " ", text).replace("--", ", "))
    # Quotation marks go; apostrophes inside words (they'll, Alice's) stay.
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    found, seen = [], set()
    for raw in re.split(r"(?<=[.!?])\s+", normalize(text)):
        sentence = raw.strip(" ,;:-")
        if sentence and sentence[-1] not in ".!?":
            sentence += "."
        words = len(sentence.split())
        if min_words <= words <= max_words and all(c in CHARS for c in sentence.lower()) and sentence not in seen:
            seen.add(sentence)
            found.append(sentence)
    return found


def speak_voice(job: tuple[EspeakVoice, list[str], list[Path], int]) -> list[float]:
    """Speak each text of ``(voice, texts, paths, sample_rate)`` in order into its WAV file at ``sample_rate``;
    return their durations in seconds. A task of `build_corpus`'s worker processes."""
    voice, texts, paths, sample_rate = job
    torch.set_num_threads(1)  # one worker process per core
    seconds = []
    for text, path in zip(texts, paths):
        samples = espeak_ng.synthesize(text, voice.voice, pitch=voice.pitch, speed=voice.speed)
        wav = resample(torch.from_numpy(samples / np.float32(32768)).unsqueeze(0), espeak_ng.SAMPLE_RATE, sample_rate)
        save_audio(path, wav, sample_rate)
        seconds.append(round(wav.shape[-1] / sample_rate, 3))
    return seconds


def build_corpus(
    out: str | Path,
    *,
    speakers: int = 40,
    sentences_per_speaker: int = 50,
    heldout_speakers: int = 4,
    heldout_sentences: int = 20,
    sample_rate: int = 24_000,
    seed: int = 0,
    workers: int = 1,
) -> Path:
    """Write ``out/wavs/*.wav``, ``out/speakers.json`` and ``out/metadata.jsonl``; return the manifest path.

    The last ``heldout_speakers`` voices (split "test_speaker") and ``heldout_sentences`` sentences
    (split "test_sentence": spoken only by the held-out voices) never occur in the "train" split.
    ``workers`` processes speak at once, one voice each: the corpus is the same for any number of them.
    """
    out = Path(out)
    if workers < 1:
        raise InputError(f"workers must be at least 1; got {workers}")
    if heldout_speakers >= speakers:
        raise InputError(f"heldout speakers ({heldout_speakers}) must be fewer than speakers ({speakers})")
    pool = book_sentences()
    rng = random.Random(seed)
    rng.shuffle(pool)
    test_sentences, train_sentences = pool[:heldout_sentences], pool[heldout_sentences:]
    if sentences_per_speaker > len(train_sentences):
        raise InputError(f"sentences per speaker must be at most {len(train_sentences)}")
    voices = make_voices(speakers, seed=seed)
    scripts = []  # per voice: its (sentence, split) pairs in order
    for i in range(speakers):
        heldout = i >= speakers - heldout_speakers
        chosen = [
            (t, "test_speaker" if heldout else "train") for t in rng.sample(train_sentences, sentences_per_speaker)
        ]
        if heldout:
            chosen += [(t, "test_sentence") for t in test_sentences]
        scripts.append(chosen)
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "speakers.json") as tmp:
        tmp.write_text(json.dumps([asdict(v) for v in voices], indent=1) + "\n")

    # A waveform depends on what its process spoke before (see longseq.speech.espeak_ng), so each voice is spoken
    # by a fresh process, and the corpus does not depend on how the voices are spread over the workers. They are
    # forked from a server that has imported this module but never loaded the library (a fork of this process
    # would inherit its library state), so they start in milliseconds. imap returns the voices in order.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    paths = [[out / "wavs" / f"{v.name}_{n:04d}.wav" for n in range(1, len(s) + 1)] for v, s in zip(voices, scripts)]
    jobs = [(v, [t for t, _ in s], p, sample_rate) for v, s, p in zip(voices, scripts, paths)]
    lines = []
    with context.Pool(workers, maxtasksperchild=1) as processes:
        spoken = tqdm(processes.imap(speak_voice, jobs), total=len(jobs), desc="espeak-ng corpus", unit="voice")
        for seconds, voice, script, voice_paths in zip(spoken, voices, scripts, paths):
            for (text, split), path, duration in zip(script, voice_paths, seconds):
                record = {
                    "audio": str(path.relative_to(out)),
                    "text": text,
                    "speaker": voice.name,
                    "split": split,
                    "seconds": duration,
                    "phonemes": phonemize(text, voice=voice.accent),
                }
                lines.append(json.dumps(record, ensure_ascii=False))
    with atomic_output(out / "metadata.jsonl") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "metadata.jsonl"


def read_voices(corpus: str | Path) -> dict[str, EspeakVoice]:
    """The voices of an espeak corpus directory, by speaker name."""
    path = Path(corpus) / "speakers.json"
    if not path.is_file():
        raise InputError(f"{corpus} is not an espeak corpus (no speakers.json)")
    return {v["name"]: EspeakVoice(**v) for v in json.loads(path.read_text())}
