"""CLaM-TTS (Kim et al. 2024, arXiv:2404.02781): a latent language model over Mel-VAE frames that emits every
residual codebook of a frame in one step.

- Text: UTF-8 bytes through a small bidirectional Transformer encoder (the paper: a pretrained ByT5 encoder,
  frozen). The decoder attends to the encoded text as a prefix (prefix-LM mask over [text ; frames]) rather
  than through cross-attention; the conditioning is the same, and the KV cache of `core.attention` serves it.
- Frames: the input of step t is the previous frame's codes, the sum of one embedding per depth.
- Head (in parallel): mixture weights pi (K), K means mu_k of the latent, and an end-of-speech logit. The latent
  density is a mixture of Gaussians sharing the Mel-VAE's variance sigma^2,
  p(z_t | x, c_<t) = sum_k pi_k N(z_t; mu_k, sigma^2 I).
- Loss: the negative variational bound -log sum_k pi_k exp(-KL(p_psi(z | c_t) || N(mu_k, sigma^2 I))), where
  p_psi(z | c_t) = N(sum_d e_d(c_t,d), sigma^2 I) so KL = ||sum_d e_d(c_t,d) - mu_k||^2 / (2 sigma^2) (the bound
  is tight at q(k) proportional to pi_k exp(-KL)), plus binary cross-entropy of the end-of-speech classifier.
- Sampling per step: k ~ pi, z ~ N(mu_k, sigma^2 I), then all D codes at once by residual quantization of z
  with the codec's codebooks (greedy). Stop when P(end) > 0.5.

The model holds a copy of its codec's quantizer (codebooks and sigma^2: `attach_codec`), so that it quantizes
what it samples exactly as its codec; synthesis checks the copy against the codec it loads.
Shapes: text (b, L) with 0 = padding; codes (b, D, T); latents (b, T, latent_dim).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.checkpoint import CheckpointError
from longseq.core.registry import Pretrained
from longseq.speech.codecs.prob_rvq import ProbabilisticRVQ
from longseq.speech.models.layers import Decoder, SinePosition, prefix_lm_mask
from longseq.speech.models.sampling import SamplingConfig
from longseq.speech.text.tokenizer import TextTokenizer


@dataclass(kw_only=True)
class ClamTTSConfig:
    # transformers
    d_model: int = 256
    n_heads: int = 4
    text_layers: int = 3
    decoder_layers: int = 6
    ffn_mult: int = 4
    dropout: float = 0.1
    norm_eps: float = 1e-5
    # head
    n_mixtures: int = 16
    eos_threshold: float = 0.5
    # codec (a Mel-VAE): latent width, residual depth and codebook size
    latent_dim: int = 64
    n_codebooks: int = 16
    codebook_size: int = 256
    codec: str = "codec"
    """Codec spec: a Mel-VAE directory (relative: inside the checkpoint)."""

    def __post_init__(self):
        for name in ("d_model", "n_heads", "text_layers", "decoder_layers", "ffn_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {self.dropout}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be positive; got {self.norm_eps}")
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ValueError(f"d_model ({self.d_model}) must be even and divisible by n_heads ({self.n_heads})")
        if self.n_mixtures < 1 or self.latent_dim < 1 or self.n_codebooks < 1 or self.codebook_size < 2:
            raise ValueError("n_mixtures, latent_dim and n_codebooks must be positive and codebook_size at least 2")
        if not 0.0 < self.eos_threshold < 1.0:
            raise ValueError(f"eos_threshold must lie in (0, 1); got {self.eos_threshold}")

    def text_tokenizer(self) -> TextTokenizer:
        """UTF-8 bytes (ids 1..256): any text, no alphabet to fix in advance (ByT5's choice)."""
        return TextTokenizer(kind="bytes")


class ClamTTS(Pretrained, nn.Module):
    """The latent language model (see the module docstring)."""

    model_type = "clam_tts"

    def __init__(self, config: ClamTTSConfig, *, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        c, d = config, config.d_model
        self.config = config
        layer = {"ffn_dim": c.ffn_mult * d, "dropout": c.dropout, "eps": c.norm_eps, **dd}
        self.text_embedding = nn.Embedding(c.text_tokenizer().vocab_size, d, **dd)
        self.text_position = SinePosition(d, dropout=c.dropout, **dd)
        self.text_encoder = Decoder(d, c.n_heads, c.text_layers, **layer)
        # Depth j's code i is row j * codebook_size + i; one extra row is the start-of-speech input.
        self.code_embedding = nn.Embedding(c.n_codebooks * c.codebook_size + 1, d, **dd)
        self.audio_position = SinePosition(d, dropout=c.dropout, **dd)
        self.decoder = Decoder(d, c.n_heads, c.decoder_layers, **layer)
        self.mixture_logits = nn.Linear(d, c.n_mixtures, **dd)
        self.means = nn.Linear(d, c.n_mixtures * c.latent_dim, **dd)
        self.eos = nn.Linear(d, 1, **dd)
        # The end comes once per utterance: start the classifier near that prior (P(end) ~ 2 %), not at 50 %.
        nn.init.constant_(self.eos.bias, -4.0)
        self.quantizer = ProbabilisticRVQ(c.latent_dim, c.n_codebooks, c.codebook_size, device=device, dtype=dtype)
        offsets = torch.arange(c.n_codebooks, device=device) * c.codebook_size
        self.register_buffer("offsets", offsets, persistent=False)

    @property
    def bos(self) -> int:
        return self.config.n_codebooks * self.config.codebook_size

    # codec

    @torch.no_grad()
    def attach_codec(self, codec) -> None:
        """Copy the Mel-VAE's quantizer (codebooks, sigma^2) into the model (before training)."""
        self._check_quantizer_shape(codec)
        self.quantizer.load_state_dict(codec.quantizer.state_dict())

    def check_codec(self, codec) -> None:
        """Raise `CheckpointError` unless ``codec`` quantizes as the copy the model was trained with."""
        self._check_quantizer_shape(codec)
        same = torch.equal(self.quantizer.codebook_tensor().cpu(), codec.quantizer.codebook_tensor().cpu())
        if not same or not torch.equal(self.quantizer.variance.cpu(), codec.quantizer.variance.cpu()):
            raise CheckpointError("the codec's codebooks differ from the ones this CLaM-TTS model was trained with")

    def _check_quantizer_shape(self, codec) -> None:
        quantizer = getattr(codec, "quantizer", None)
        if not isinstance(quantizer, ProbabilisticRVQ):
            raise CheckpointError(f"CLaM-TTS needs a Mel-VAE codec (probabilistic RVQ); got a {type(codec).__name__}")
        c = self.config
        have = tuple(quantizer.codebook_tensor().shape)
        if have != (c.n_codebooks, c.codebook_size, c.latent_dim):
            raise CheckpointError(
                f"the codec has {have[0]} codebooks of {have[1]} codes of width {have[2]}; the model needs "
                f"{c.n_codebooks} x {c.codebook_size} x {c.latent_dim}"
            )

    # network

    def encode_text(self, text: torch.Tensor, text_lens: torch.Tensor | None = None) -> torch.Tensor:
        """text (b, L) -> encoded text (b, L, d), bidirectional over the real (non-padding) tokens."""
        valid = None if text_lens is None else torch.arange(text.shape[1], device=text.device) < text_lens[:, None]
        return self.text_encoder(self.text_position(self.text_embedding(text)), key_padding_mask=valid)

    def embed_frames(self, codes: torch.Tensor, *, offset: int = 0) -> torch.Tensor:
        """codes (b, D, T) -> frame inputs (b, T, d) at positions offset.. (the sum of the depth embeddings)."""
        x = self.code_embedding(codes + self.offsets[:, None]).sum(1)
        return self.audio_position(x, offset=offset)

    def start_inputs(self, batch_size: int, device) -> torch.Tensor:
        """The start-of-speech input (b, 1, d) at position 0."""
        bos = torch.full((batch_size, 1), self.bos, device=device)
        return self.audio_position(self.code_embedding(bos))

    def head(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """hidden (..., d) -> mixture log-weights (..., K), means (..., K, latent_dim), end logit (...)."""
        log_pi = torch.log_softmax(self.mixture_logits(hidden).float(), dim=-1)
        means = self.means(hidden).unflatten(-1, (self.config.n_mixtures, self.config.latent_dim))
        return log_pi, means, self.eos(hidden)[..., 0]

    def forward(
        self, text: torch.Tensor, text_lens: torch.Tensor, codes: torch.Tensor, code_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced pass over whole utterances: text (b, L), codes (b, D, T), lengths (b,).

        Returns the head's outputs for the T + 1 positions (position t predicts frame t; position T_i ends
        utterance i): log-weights (b, T + 1, K), means (b, T + 1, K, latent_dim), end logits (b, T + 1).
        """
        b, _, t = codes.shape
        x_text = self.encode_text(text, text_lens)
        frames = torch.cat([self.start_inputs(b, codes.device), self.embed_frames(codes, offset=1)], dim=1)
        n_text = x_text.shape[1]
        valid = torch.cat(
            [
                torch.arange(n_text, device=text.device) < text_lens[:, None],
                torch.arange(t + 1, device=text.device) < (code_lens + 1)[:, None],
            ],
            dim=1,
        )
        hidden = self.decoder(
            torch.cat([x_text, frames], dim=1),
            attn_mask=prefix_lm_mask(n_text, t + 1, device=text.device),
            key_padding_mask=valid,
        )
        return self.head(hidden[:, n_text:])

    def losses(
        self, text: torch.Tensor, text_lens: torch.Tensor, codes: torch.Tensor, code_lens: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The training losses: ``vb`` (negative variational bound per latent dimension), ``eos`` (BCE), and
        their sum ``loss``; ``eos_acc`` is the end classifier's accuracy."""
        log_pi, means, eos_logits = self(text, text_lens, codes, code_lens)
        b, _, t = codes.shape
        position = torch.arange(t + 1, device=codes.device)
        frame = position[None, :t] < code_lens[:, None]  # (b, T)
        target = self.quantizer.decode(codes).transpose(1, 2).float()  # (b, T, latent_dim)
        kl = (target[:, :, None] - means[:, :t].float()).pow(2).sum(-1) / (2 * self.quantizer.variance)
        vb = -torch.logsumexp(log_pi[:, :t] - kl, dim=-1)  # (b, T)
        vb = vb[frame].sum() / (frame.sum() * self.config.latent_dim)
        ended = position[None] == code_lens[:, None]  # (b, T + 1)
        counted = position[None] <= code_lens[:, None]
        eos = F.binary_cross_entropy_with_logits(eos_logits.float()[counted], ended[counted].float())
        eos_acc = ((eos_logits > 0) == ended)[counted].float().mean()
        return {"loss": vb + eos, "vb": vb, "eos": eos, "eos_acc": eos_acc}

    # generation

    def sample_frame(self, hidden: torch.Tensor, temperature: float, generator=None) -> tuple[torch.Tensor, float]:
        """hidden (1, d) -> (codes (1, D), P(end)): k ~ pi, z ~ N(mu_k, sigma^2 I), codes = RQ(z)."""
        log_pi, means, eos_logit = self.head(hidden)
        k = torch.multinomial(torch.softmax(log_pi / temperature, -1), 1, generator=generator)[:, 0]
        mean = means[torch.arange(len(k)), k].float()  # (1, latent_dim)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        z = mean + noise * (self.quantizer.variance * temperature).sqrt()
        codes = self.quantizer.encode(z[:, :, None])[:, :, 0]
        return codes, float(torch.sigmoid(eos_logit.float())[0])

    @torch.no_grad()
    def generate(
        self,
        text: torch.Tensor,
        prompt: torch.Tensor | None,
        *,
        max_frames: int,
        sampling: SamplingConfig,
        min_frames: int = 0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Codes (1, D, T) that continue the acoustic prompt (1, D, Tp) while speaking ``text`` (1, L).

        ``text`` holds the prompt's transcript followed by the new text. One decoder step per frame emits all D
        codes; generation stops when P(end) > ``eos_threshold`` (not before ``min_frames``) or at
        ``max_frames``. ``sampling.temperature`` scales the mixture logits and sigma^2; the token samplers'
        top-p, top-k and repetition-aware settings do not apply to continuous latents.
        """
        device = text.device
        c = self.config
        if prompt is None:
            prompt = torch.zeros(1, c.n_codebooks, 0, dtype=torch.long, device=device)
        x_text = self.encode_text(text)
        x = torch.cat([x_text, self.start_inputs(1, device), self.embed_frames(prompt, offset=1)], dim=1)
        n_text, n_audio = x_text.shape[1], prompt.shape[-1] + 1
        state = self.decoder.init_state(1, max_seqlen=n_text + n_audio + max_frames)
        hidden = self.decoder(x, state=state, attn_mask=prefix_lm_mask(n_text, n_audio, device=device))[:, -1]
        out = []
        while len(out) < max_frames:
            codes, p_end = self.sample_frame(hidden, sampling.temperature, generator)
            if p_end > c.eos_threshold and len(out) >= min_frames:
                break
            out.append(codes)
            if len(out) < max_frames:
                step = self.embed_frames(codes[:, :, None], offset=n_audio + len(out) - 1)
                hidden = self.decoder(step, state=state)[:, -1]
        if not out:
            return prompt.new_zeros(1, c.n_codebooks, 0)
        return torch.stack(out, dim=-1)
