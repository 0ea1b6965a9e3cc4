"""The speech language models' families (`longseq.from_pretrained` loads them): presets, layouts, examples.

Presets give randomly initialised models of the test, CPU-trained and released (VALL-E X) shapes. VALL-E 2
also reads the released VALL-E X file (`speech.models.vallex`), and moves a checkpoint to another group size or
tokenizer (`speech.models.valle2.adapt`).
"""

from __future__ import annotations

import torch

from longseq.core.registry import Family
from longseq.speech.models.clam_tts import ClamTTS, ClamTTSConfig
from longseq.speech.models.speechssm import SpeechSSM, SpeechSSMConfig
from longseq.speech.models.valle2 import Valle2, Valle2Config, adapt
from longseq.speech.models.vallex import VALLEX

VALLE2_PRESETS = {
    # tests
    "valle2-tiny": Valle2Config(
        d_model=32, n_heads=2, ar_layers=1, nar_layers=1, codebook_size=16, n_codebooks=4, dropout=0.0
    ),
    # the bundled CPU-trained model (mel codec: 25 frames/s, 8 codebooks of 256), sized to train on one shared
    # CPU core within about an hour; untied NAR heads, since heads tied to N(0, 1) embeddings start with
    # logits of std ~sqrt(d) (an initial NAR loss ~30 instead of ~ln 256) and cost a short run its first steps
    "valle2-small": Valle2Config(
        d_model=128, n_heads=4, ar_layers=4, nar_layers=3, codebook_size=256, n_codebooks=8, nar_tie_heads=False
    ),
    # the released VALL-E X size (Plachtaa), EnCodec 6 kbps
    "valle-x": Valle2Config(
        d_model=1024,
        n_heads=16,
        ar_layers=12,
        nar_layers=12,
        text_vocab_size=2048,
        n_languages=3,
        tokenizer="vallex",
        codebook_size=1024,
        n_codebooks=8,
    ),
}

# CLaM-TTS over a Mel-VAE: tests (mel-vae-tiny) and the CPU-trained model (mel-vae: 16 x 256, 64-d latents)
CLAM_TTS_PRESETS = {
    "clam-tts-tiny": ClamTTSConfig(
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
    "clam-tts-small": ClamTTSConfig(d_model=192, n_heads=4, text_layers=2, decoder_layers=5),
}

# SpeechSSM over a mel codec: tests (mel-tiny) and the CPU-trained long-form model (mel-24k: 8 x 256)
SPEECHSSM_PRESETS = {
    "speechssm-tiny": SpeechSSMConfig(
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
    "speechssm-small": SpeechSSMConfig(
        d_model=128, n_layers=6, d_intermediate=256, attention_window=125, segment_seconds=10.0
    ),
}


def _utterances(vocab_size: int, n_codebooks: int, codebook_size: int, frames: int) -> tuple[torch.Tensor, ...]:
    """Two padded utterances: text (2, 7) in [1, vocab_size), text_lens, codes (2, n_codebooks, frames), code_lens."""
    text = torch.randint(1, vocab_size, (2, 7))
    codes = torch.randint(0, codebook_size, (2, n_codebooks, frames))
    return text, torch.tensor([7, 5]), codes, torch.tensor([frames, frames // 2])


def _valle2_example(model: Valle2) -> tuple:
    """`Valle2.forward`'s training pass: frames a multiple of G, a prompt of 2 and 1 frames, codebook 1."""
    c = model.config
    return (*_utterances(c.text_rows, c.n_codebooks, c.codebook_size, 4 * c.group_size), torch.tensor([2, 1]), 1)


def _clam_tts_example(model: ClamTTS) -> tuple:
    c = model.config
    return _utterances(c.text_tokenizer().vocab_size, c.n_codebooks, c.codebook_size, 5)


def _speechssm_example(model: SpeechSSM) -> tuple:
    """Delayed-grid columns (2, k, 6): codes or ``empty``."""
    c = model.config
    return (torch.randint(0, c.codebook_size + 1, (2, c.n_codebooks, 6)),)


VALLE2 = Family(
    model_class=Valle2,
    config_class=Valle2Config,
    presets=VALLE2_PRESETS,
    layouts=(VALLEX,),
    adapt=adapt,
    example=_valle2_example,
)
CLAM_TTS = Family(model_class=ClamTTS, config_class=ClamTTSConfig, presets=CLAM_TTS_PRESETS, example=_clam_tts_example)
SPEECHSSM = Family(
    model_class=SpeechSSM, config_class=SpeechSSMConfig, presets=SPEECHSSM_PRESETS, example=_speechssm_example
)
