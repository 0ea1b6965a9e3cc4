"""VALL-E 2 (Chen et al. 2024, arXiv:2406.05370): zero-shot TTS as codec language modelling.

- AR decoder over [text ; BOS ; codebook-0 codes] with Grouped Code Modeling: G consecutive frames form one
  step. Their G code embeddings are concatenated and projected (G*d -> d, ``group_in``); one hidden state
  is projected (d -> G*d, ``group_out``) to G code predictions through the shared code head. G = 1 drops
  both projections and is plain VALL-E.
- NAR decoder for codebooks 1..n-1, one codebook per pass: prompt frames carry the sum of all codebook
  embeddings, target frames the sum of codebooks < k; the stage k enters through adaptive LayerNorms
  (VALL-E / VALL-E X) or as an appended code-ID token (the VALL-E 2 paper).
- Layout options of the released VALL-E X checkpoint: untied AR head, learned position scales, language
  embeddings added to the text, NAR heads tied to later codebook embeddings, AR BOS id = codebook_size + 1.

Shapes: text (b, L) with 0 = padding; codes (b, n_q, T) in EnCodec order; codebook 0 alone (b, T).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.checkpoint import CheckpointError, load_strict
from longseq.core.registry import Pretrained
from longseq.speech.models.layers import Decoder, SinePosition, prefix_lm_mask
from longseq.speech.models.sampling import SamplingConfig, sample_token
from longseq.speech.text.tokenizer import PAD, SYMBOLS, TextTokenizer, TokenizerKind
from longseq.speech.text.vallex import VALLEX_SYMBOLS, VallexTokenizer

IGNORE = -100


@dataclass(kw_only=True)
class Valle2Config:
    # transformer
    d_model: int = 256
    n_heads: int = 4
    ar_layers: int = 6
    nar_layers: int = 6
    ffn_mult: int = 4
    dropout: float = 0.1
    norm_eps: float = 1e-5
    # tokens
    text_vocab_size: int = 0
    """Text embedding rows; 0 = the tokenizer's vocabulary size."""
    n_languages: int = 0
    """Language embedding rows added to the text (VALL-E X: 3); 0 = none."""
    codebook_size: int = 1024
    n_codebooks: int = 8
    # VALL-E 2
    group_size: Literal[1, 2, 4, 8] = 1
    # layout options
    ar_tie_head: bool = False
    """Tie the AR code head to the AR audio embedding (VALL-E X: untied)."""
    nar_stage: Literal["adaptive_norm", "token"] = "adaptive_norm"
    nar_tie_heads: bool = True
    """Tie the head for codebook k to the embedding of codebook k + 1 (VALL-E X); the last head is its own."""
    # text front end and codec
    tokenizer: TokenizerKind | Literal["vallex"] = "chars"
    """``vallex``: the released VALL-E X front end (G2P for en/zh/ja, per-token languages; `VallexTokenizer`)."""
    symbols: str | None = None
    """The alphabet of a chars, phonemes or vallex tokenizer; None: the kind's default (so that a preset loaded
    with another ``tokenizer`` gets that tokenizer's alphabet)."""
    voice: str = "en-us"
    codec: str = "encodec"
    """Codec spec: ``encodec``, ``encodec-<kbps>kbps`` or a codec directory (relative: inside the checkpoint)."""
    prompt_seconds: float = 3.0
    """Longest acoustic prompt the NAR is trained with (VALL-E: 3 s)."""

    def __post_init__(self):
        for name in ("d_model", "n_heads", "ar_layers", "nar_layers", "ffn_mult", "codebook_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {self.dropout}")
        for name in ("norm_eps", "prompt_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive; got {getattr(self, name)}")
        if self.text_vocab_size < 0 or self.n_languages < 0:
            raise ValueError("text_vocab_size and n_languages must be >= 0 (0: the tokenizer's size, no languages)")
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ValueError(f"d_model ({self.d_model}) must be even and divisible by n_heads ({self.n_heads})")
        if self.group_size not in (1, 2, 4, 8):
            raise ValueError(f"group_size must be 1, 2, 4 or 8; got {self.group_size}")
        if self.n_codebooks < 2:
            raise ValueError("VALL-E needs at least two codebooks (AR for the first, NAR for the rest)")
        if self.nar_stage not in ("adaptive_norm", "token"):
            raise ValueError(f"nar_stage must be 'adaptive_norm' or 'token'; got {self.nar_stage!r}")
        if self.tokenizer not in (*SYMBOLS, "vallex"):
            raise ValueError(f"unknown tokenizer {self.tokenizer!r}: one of {', '.join(SYMBOLS)}, vallex")
        vocab = self.text_tokenizer().vocab_size
        if 0 < self.text_vocab_size < vocab:
            raise ValueError(f"text_vocab_size ({self.text_vocab_size}) is below the tokenizer's ({vocab})")

    def text_tokenizer(self) -> TextTokenizer | VallexTokenizer:
        if self.tokenizer == "vallex":
            return VallexTokenizer.from_symbols(VALLEX_SYMBOLS if self.symbols is None else self.symbols)
        symbols = SYMBOLS[self.tokenizer] if self.symbols is None else self.symbols
        return TextTokenizer(kind=self.tokenizer, symbols=symbols, voice=self.voice)

    @property
    def text_rows(self) -> int:
        return self.text_vocab_size or self.text_tokenizer().vocab_size

    @property
    def eos(self) -> int:
        return self.codebook_size

    @property
    def bos(self) -> int:
        return self.codebook_size + 1


class TextEmbedding(nn.Module):
    """Token embedding (+ language embedding) + scaled sinusoidal positions."""

    def __init__(self, config: Valle2Config, *, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.embedding = nn.Embedding(config.text_rows, config.d_model, **dd)
        self.language_embedding = nn.Embedding(config.n_languages, config.d_model, **dd) if config.n_languages else None
        self.position = SinePosition(config.d_model, dropout=config.dropout, **dd)

    def forward(self, text: torch.Tensor, languages: torch.Tensor | None = None) -> torch.Tensor:
        """text, languages: (b, L) -> (b, L, d); languages default to id 0 when the model has them."""
        x = self.embedding(text)
        if self.language_embedding is not None:
            x = x + self.language_embedding(torch.zeros_like(text) if languages is None else languages)
        return self.position(x)


class ValleAR(nn.Module):
    """The autoregressive decoder over codebook 0 with Grouped Code Modeling."""

    def __init__(self, config: Valle2Config, *, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        c, d, g = config, config.d_model, config.group_size
        self.config = config
        self.text = TextEmbedding(config, **dd)
        self.audio_embedding = nn.Embedding(c.codebook_size + 2, d, **dd)  # codes, EOS, BOS
        self.audio_position = SinePosition(d, dropout=c.dropout, **dd)
        self.group_in = nn.Linear(g * d, d, **dd) if g > 1 else None
        self.decoder = Decoder(
            d, c.n_heads, c.ar_layers, ffn_dim=c.ffn_mult * d, dropout=c.dropout, eps=c.norm_eps, **dd
        )
        self.group_out = nn.Linear(d, g * d, **dd) if g > 1 else None
        self.head = None if c.ar_tie_head else nn.Linear(d, c.codebook_size + 1, bias=False, **dd)

    def embed_audio(self, tokens: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        """tokens (b, n * G) -> group embeddings (b, n, d) at group positions offset...."""
        x = self.audio_embedding(tokens)
        g = self.config.group_size
        if self.group_in is not None:
            x = self.group_in(x.reshape(x.shape[0], -1, g * x.shape[-1]))
        return self.audio_position(x, offset=offset)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states (b, n, d) -> logits (b, n, G, codebook_size + 1) for the next group."""
        b, n, d = h.shape
        h = h.unsqueeze(2) if self.group_out is None else self.group_out(h).reshape(b, n, -1, d)
        if self.head is None:
            return F.linear(h, self.audio_embedding.weight[: self.config.codebook_size + 1])
        return self.head(h)

    def forward(
        self,
        text: torch.Tensor,
        text_lens: torch.Tensor,
        codes: torch.Tensor,
        code_lens: torch.Tensor,
        languages: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced pass.

        Args:
            text (b, L), text_lens (b,); codes: codebook 0 (b, T), code_lens (b,): every length and T
                multiples of G (clip leading frames).

        Returns:
            logits (b, T / G + 1, G, codebook_size + 1) and targets (b, T / G + 1, G): the codes, then one
            group of EOS, then IGNORE.
        """
        c, g = self.config, self.config.group_size
        b, t = codes.shape
        if t % g or bool((code_lens % g).any()):
            raise ValueError(f"code lengths must be multiples of the group size {g}")
        frame = torch.arange(t + g, device=codes.device)
        inputs = torch.cat([codes.new_full((b, g), c.bos), codes], dim=1)
        inputs = torch.where(frame < (code_lens + g)[:, None], inputs, c.eos)
        targets = torch.cat([codes, codes.new_full((b, g), c.eos)], dim=1)
        targets = torch.where(frame < code_lens[:, None], targets, c.eos)
        targets = torch.where(frame < (code_lens + g)[:, None], targets, IGNORE)
        x_text = self.text(text, languages)
        x_audio = self.embed_audio(inputs)
        n_text, n_audio = x_text.shape[1], x_audio.shape[1]
        text_valid = torch.arange(n_text, device=text.device) < text_lens[:, None]
        audio_valid = torch.arange(n_audio, device=text.device) < (code_lens // g + 1)[:, None]
        h = self.decoder(
            torch.cat([x_text, x_audio], dim=1),
            attn_mask=prefix_lm_mask(n_text, n_audio, device=text.device),
            key_padding_mask=torch.cat([text_valid, audio_valid], dim=1),
        )
        return self.logits(h[:, n_text:]), targets.reshape(b, -1, g)

    def prefill(
        self, text: torch.Tensor, prompt: torch.Tensor, *, languages: torch.Tensor | None = None, max_groups: int = 0
    ) -> tuple[torch.Tensor, list]:
        """Start decoding: text (1, L), prompt codebook 0 (1, Tp) with Tp a multiple of G.

        Returns the logits for the first new group (1, G, codebook_size + 1) and the KV caches.
        """
        g = self.config.group_size
        x_text = self.text(text, languages)
        x_audio = self.embed_audio(torch.cat([prompt.new_full((1, g), self.config.bos), prompt], dim=1))
        n_text, n_audio = x_text.shape[1], x_audio.shape[1]
        state = self.decoder.init_state(1, max_seqlen=n_text + n_audio + max_groups)
        h = self.decoder(
            torch.cat([x_text, x_audio], dim=1),
            state=state,
            attn_mask=prefix_lm_mask(n_text, n_audio, device=text.device),
        )
        return self.logits(h[:, -1:])[:, 0], state

    def step(self, group: torch.Tensor, state: list, position: int) -> torch.Tensor:
        """Feed one group of codes (1, G) at group position ``position``; logits (1, G, V) for the next."""
        h = self.decoder(self.embed_audio(group, offset=position), state=state)
        return self.logits(h)[:, 0]

    @torch.no_grad()
    def generate(
        self,
        text: torch.Tensor,
        prompt: torch.Tensor,
        *,
        max_frames: int,
        sampling: SamplingConfig,
        min_frames: int = 0,
        languages: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Codebook 0 after the prompt: (1, T) with T <= max_frames, ending at EOS or the bound; EOS is
        suppressed for the first ``min_frames`` (fixed-length runs, e.g. for timing).

        Inside a group the G codes come from one forward pass and are sampled one after another, so the
        repetition check of RAS sees the codes before them.
        """
        g, eos = self.config.group_size, self.config.eos
        max_groups = -(-max_frames // g)
        logits, state = self.prefill(text, prompt, languages=languages, max_groups=max_groups)
        position = prompt.shape[1] // g + 1
        out: list[int] = []
        while True:
            group = []
            if len(out) < min_frames:
                logits = logits.index_fill(-1, torch.tensor([eos], device=logits.device), float("-inf"))
            for i in range(g):
                group.append(sample_token(logits[0, i], out + group, sampling, generator=generator))
            if eos in group:
                out += group[: group.index(eos)]
                break
            out += group
            if len(out) >= max_frames:
                break
            logits = self.step(torch.tensor([group], device=text.device), state, position)
            position += 1
        return torch.tensor([out[:max_frames]], dtype=torch.long, device=text.device)


class ValleNAR(nn.Module):
    """The non-autoregressive decoder: codebook k (1..n_q-1) of every frame at once, bidirectional."""

    def __init__(self, config: Valle2Config, *, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        c, d = config, config.d_model
        self.config = config
        self.text = TextEmbedding(config, **dd)
        # Codebook 0's table has one more row (padding id codebook_size), as in VALL-E.
        self.audio_embeddings = nn.ModuleList(
            nn.Embedding(c.codebook_size + (j == 0), d, **dd) for j in range(c.n_codebooks)
        )
        self.audio_position = SinePosition(d, dropout=c.dropout, **dd)
        self.stage_embedding = nn.Embedding(c.n_codebooks - 1, d, **dd)
        self.decoder = Decoder(
            d,
            c.n_heads,
            c.nar_layers,
            ffn_dim=c.ffn_mult * d,
            dropout=c.dropout,
            adaptive=c.nar_stage == "adaptive_norm",
            eps=c.norm_eps,
            **dd,
        )
        self.heads = nn.ModuleList(nn.Linear(d, c.codebook_size, bias=False, **dd) for _ in range(c.n_codebooks - 1))
        if c.nar_tie_heads:
            for j in range(c.n_codebooks - 2):
                self.heads[j].weight = self.audio_embeddings[j + 2].weight

    def forward(
        self,
        text: torch.Tensor,
        text_lens: torch.Tensor,
        codes: torch.Tensor,
        code_lens: torch.Tensor,
        prompt_lens: torch.Tensor,
        stage: int,
        languages: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for codebook ``stage`` of every frame.

        Args:
            text (b, L), text_lens (b,).
            codes: (b, n_q, N) whole utterances, prompt frames first; code_lens (b,) frames per utterance;
                prompt_lens (b,) prompt frames (all codebooks visible); codebooks >= stage of the other
                frames are ignored.
            stage: k in 1..n_q - 1.

        Returns:
            (b, N, codebook_size); only the frames in [prompt_len, code_len) are predictions.
        """
        if not 1 <= stage < self.config.n_codebooks:
            raise ValueError(f"stage must lie in [1, {self.config.n_codebooks}); got {stage}")
        b, n_q, n = codes.shape
        frame = torch.arange(n, device=codes.device)
        prompt = frame < prompt_lens[:, None]  # (b, N)
        x_audio = 0
        for j in range(n_q):
            visible = (prompt | (j < stage)).unsqueeze(-1)
            x_audio = x_audio + self.audio_embeddings[j](codes[:, j]) * visible
        x_text = self.text(text, languages)
        x = torch.cat([x_text, self.audio_position(x_audio)], dim=1)
        valid = [torch.arange(text.shape[1], device=text.device) < text_lens[:, None], frame < code_lens[:, None]]
        stage_vector = self.stage_embedding.weight[stage - 1 : stage]  # (1, d)
        if self.config.nar_stage == "token":
            x = torch.cat([x, stage_vector.expand(b, 1, -1)], dim=1)
            valid.append(torch.ones(b, 1, dtype=torch.bool, device=text.device))
        h = self.decoder(
            x,
            condition=stage_vector if self.config.nar_stage == "adaptive_norm" else None,
            key_padding_mask=torch.cat(valid, dim=1),
        )
        return self.heads[stage - 1](h[:, text.shape[1] : text.shape[1] + n])

    @torch.no_grad()
    def generate(
        self, text: torch.Tensor, prompt: torch.Tensor, first: torch.Tensor, languages: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Greedy codebooks 1..n_q-1: text (1, L), prompt (1, n_q, Tp), codebook 0 (1, T) -> (1, n_q, T)."""
        n_q, tp, t = self.config.n_codebooks, prompt.shape[-1], first.shape[-1]
        codes = torch.zeros(1, n_q, tp + t, dtype=torch.long, device=first.device)
        codes[:, :, :tp] = prompt
        codes[:, 0, tp:] = first
        lens = {
            "text_lens": torch.tensor([text.shape[1]], device=text.device),
            "code_lens": torch.tensor([tp + t], device=text.device),
            "prompt_lens": torch.tensor([tp], device=text.device),
        }
        for stage in range(1, n_q):
            logits = self(text, codes=codes, stage=stage, languages=languages, **lens)
            codes[:, stage, tp:] = logits[:, tp:].argmax(-1)
        return codes[:, :, tp:]


class Valle2(Pretrained, nn.Module):
    """VALL-E 2: the AR and NAR decoders of one voice-cloning TTS model (one checkpoint, as VALL-E X)."""

    model_type = "valle2"

    def __init__(self, config: Valle2Config, *, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.ar = ValleAR(config, device=device, dtype=dtype)
        self.nar = ValleNAR(config, device=device, dtype=dtype)

    def forward(
        self,
        text: torch.Tensor,
        text_lens: torch.Tensor,
        codes: torch.Tensor,
        code_lens: torch.Tensor,
        prompt_lens: torch.Tensor,
        stage: int,
        languages: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training pass: both decoders teacher-forced on whole items (`ValleAR.forward`, `ValleNAR.forward`).

        Args:
            text (b, L), text_lens (b,); codes (b, n_q, T), code_lens (b,) as `ValleAR.forward` needs them
                (multiples of G); prompt_lens (b,) and stage as `ValleNAR.forward`; languages (b, L): each text
                token's language row (models with language tables; None: row 0).

        Returns:
            AR logits (b, T / G + 1, G, codebook_size + 1), AR targets (b, T / G + 1, G), NAR logits for codebook
            ``stage`` (b, T, codebook_size).
        """
        ar_logits, ar_targets = self.ar(text, text_lens, codes[:, 0], code_lens, languages)
        return ar_logits, ar_targets, self.nar(text, text_lens, codes, code_lens, prompt_lens, stage, languages)

    @torch.no_grad()
    def generate(
        self,
        text: torch.Tensor,
        prompt: torch.Tensor | None,
        *,
        max_frames: int,
        sampling: SamplingConfig,
        min_frames: int = 0,
        languages: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Codes (1, n_q, T) that continue the acoustic prompt (1, n_q, Tp) while speaking ``text`` (1, L).

        ``text`` holds the prompt's transcript followed by the new text. The prompt loses its first
        Tp mod G frames (Grouped Code Modeling needs whole groups; leading frames are usually silence).
        """
        if prompt is None:
            prompt = torch.zeros(1, self.config.n_codebooks, 0, dtype=torch.long, device=text.device)
        prompt = prompt[..., prompt.shape[-1] % self.config.group_size :]
        first = self.ar.generate(
            text,
            prompt[:, 0],
            max_frames=max_frames,
            min_frames=min_frames,
            sampling=sampling,
            languages=languages,
            generator=generator,
        )
        if first.shape[1] == 0:
            return prompt.new_zeros(1, self.config.n_codebooks, 0)
        return self.nar.generate(text, prompt, first, languages)


def adapt(old: Valle2, changes: dict) -> Valle2:
    """A loaded VALL-E 2 moved to another group size or tokenizer, to fine-tune into them.

    The group layers it adds start fresh (VALL-E X with grouping), and the text embeddings are rebuilt for the
    new alphabet, keeping the rows of the symbols both alphabets share (characters to phonemes: most consonants
    and "a" to "z"). A new ``tokenizer`` without ``symbols`` brings its default alphabet.

    Raises:
        CheckpointError: any other change, or a setting the config refuses (one line).
    """
    unknown = sorted(set(changes) - {"group_size", "tokenizer", "symbols"})
    if unknown:
        raise CheckpointError(
            f"only group_size, tokenizer and symbols can change in a VALL-E 2 checkpoint; got {', '.join(unknown)}"
        )
    if "tokenizer" in changes:
        changes = {"symbols": None, **changes}
    try:
        model = Valle2(dataclasses.replace(old.config, **changes))
    except ValueError as err:
        raise CheckpointError(f"invalid Valle2Config: {err}") from None
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
