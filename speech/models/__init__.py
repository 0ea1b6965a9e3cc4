"""Speech models: their presets and their families in the registry (`longseq.from_pretrained` loads them).

Presets give randomly initialised models of the test, CPU-trained and released (VALL-E X) shapes.
"""

from __future__ import annotations

import dataclasses

import torch

from longseq.core.checkpoint import CheckpointError, load_strict
from longseq.core.registry import Family
from longseq.speech.models.clam_tts import ClamTTS, ClamTTSConfig
from longseq.speech.models.speechssm import SpeechSSM, SpeechSSMConfig
from longseq.speech.models.valle2 import Valle2, Valle2Config
from longseq.speech.text.tokenizer import PAD, SYMBOLS

PRESETS: dict[str, tuple[type, object]] = {
    # tests
    "valle2-tiny": (
        Valle2,
        Valle2Config(d_model=32, n_heads=2, ar_layers=1, nar_layers=1, codebook_size=16, n_codebooks=4, dropout=0.0),
    ),
    # the bundled CPU-trained model (mel codec: 25 frames/s, 8 codebooks of 256), sized to train on one shared
    # CPU core within about an hour; untied NAR heads, since heads tied to N(0, 1) embeddings start with
    # logits of std ~sqrt(d) (an initial NAR loss ~30 instead of ~ln 256) and cost a short run its first steps
    "valle2-small": (
        Valle2,
        Valle2Config(
            d_model=128, n_heads=4, ar_layers=4, nar_layers=3, codebook_size=256, n_codebooks=8, nar_tie_heads=False
        ),
    ),
    # CLaM-TTS over a Mel-VAE: tests (mel-vae-tiny) and the CPU-trained model (mel-vae: 16 x 256, 64-d latents)
    "clam-tts-tiny": (
        ClamTTS,
        ClamTTSConfig(
            d_model=32,
            n_heads=2,
            text_layers=1,
            decoder_layers=1,
            n_mixtures=4,
            latent_dim=8,
            n_codebooks=4,
            codebook_size=16,
            dropout=0.0,
        ),
    ),
    "clam-tts-small": (ClamTTS, ClamTTSConfig(d_model=192, n_heads=4, text_layers=2, decoder_layers=5)),
    # SpeechSSM over a mel codec: tests (mel-tiny) and the CPU-trained long-form model (mel-24k: 8 x 256)
    "speechssm-tiny": (
        SpeechSSM,
        SpeechSSMConfig(
            d_model=32,
            n_layers=3,
            d_intermediate=64,
            d_state=8,
            n_heads=2,
            attention_window=16,
            n_codebooks=4,
            codebook_size=16,
            segment_seconds=2.0,
            window_seconds=4.0,
            overlap_seconds=0.4,
        ),
    ),
    "speechssm-small": (
        SpeechSSM,
        SpeechSSMConfig(d_model=128, n_layers=6, d_intermediate=256, attention_window=125, segment_seconds=10.0),
    ),
    # the released VALL-E X size (Plachtaa), EnCodec 6 kbps
    "valle-x": (
        Valle2,
        Valle2Config(
            d_model=1024,
            n_heads=16,
            ar_layers=12,
            nar_layers=12,
            text_vocab_size=2048,
            n_languages=3,
            codebook_size=1024,
            n_codebooks=8,
        ),
    ),
}


def _replaced(config, overrides: dict):
    """``config`` with ``overrides`` (a tokenizer kind brings its default symbols); bad values -> CheckpointError."""
    if "tokenizer" in overrides and "symbols" not in overrides:
        if overrides["tokenizer"] not in SYMBOLS:
            raise CheckpointError(f"unknown tokenizer {overrides['tokenizer']!r}: one of {', '.join(SYMBOLS)}")
        overrides = {**overrides, "symbols": SYMBOLS[overrides["tokenizer"]]}
    try:
        return dataclasses.replace(config, **overrides)
    except ValueError as err:  # the config's own validation (e.g. group_size 3)
        raise CheckpointError(str(err)) from None


def _adapted(old: Valle2, overrides: dict) -> Valle2:
    """A loaded VALL-E 2 moved to another group size or tokenizer, to fine-tune into them: the group layers it
    adds start fresh (VALL-E X with grouping), and the text embeddings are rebuilt for the new alphabet, keeping
    the rows of the symbols both alphabets share (characters to phonemes: most consonants and "a" to "z")."""
    if set(overrides) - {"group_size", "tokenizer"}:
        raise CheckpointError(
            f"only group_size and tokenizer can change in a VALL-E 2 checkpoint; got {', '.join(overrides)}"
        )
    model = Valle2(_replaced(old.config, overrides))
    fresh = model.state_dict()
    group = ("ar.group_in.", "ar.group_out.")
    state = {k: v for k, v in old.state_dict().items() if not k.startswith(group)}
    state.update({k: v for k, v in fresh.items() if k.startswith(group)})
    old_ids = old.config.text_tokenizer().symbol_ids()
    new_ids = model.config.text_tokenizer().symbol_ids()
    shared = [(new_ids[s], old_ids[s]) for s in new_ids if s in old_ids] + [(PAD, PAD)]
    rows_new, rows_old = (torch.tensor(rows) for rows in zip(*shared))
    for name in ("ar.text.embedding.weight", "nar.text.embedding.weight"):
        table = fresh[name].clone()
        table[rows_new] = state[name][rows_old]
        state[name] = table
    return load_strict(model, state, "the adapted VALL-E 2")


def _family(model_class: type, config_class: type, **options) -> Family:
    presets = {name: config for name, (cls, config) in PRESETS.items() if cls is model_class}
    return Family(model_class=model_class, config_class=config_class, presets=presets, **options)


VALLE2 = _family(Valle2, Valle2Config, adapt=_adapted)
CLAM_TTS = _family(ClamTTS, ClamTTSConfig)
SPEECHSSM = _family(SpeechSSM, SpeechSSMConfig)
