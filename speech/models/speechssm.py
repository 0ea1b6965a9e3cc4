"""SpeechSSM (Park et al. 2024, arXiv:2412.18603): a hybrid state-space speech language model for long-form
speech continuation, on the project's core blocks.

- Backbone: Griffin-style, as the paper's RecurrentGemma: recurrent layers (here `core.ssm.Mamba`) and local
  sliding-window multi-query attention (`core.attention`, ring-buffer KV cache) in a 2:1 pattern, each mixer
  followed by a gated MLP. Decoding state is constant: the SSM states have a fixed size and the attention cache
  holds ``window`` tokens, so memory and time per token do not grow with the length generated.
- Tokens: codec frames of ``n_codebooks`` codes. The paper models one stream of semantic tokens and renders
  them with SoundStorm; here one model emits all codebooks of a frame with MusicGen's delay pattern (codebook k
  of frame t is predicted at step t + k, after the coarser codebooks of that frame), one step per frame.
- Training on fixed-length segments (the paper: 4 minutes) cut from per-speaker streams that wrap around to
  their own start instead of ending in padding: the implicit-EOS fix (no window ever shows the model that
  speech ends), which is what lets it continue far past its training length.
- Continuation of a prompt for any duration; windowed decoding with overlap lives in `speech.longform`.

Shapes: codes (b, k, t) in codec order; the delayed grid (b, k, t + k - 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.block import Block
from longseq.core.lm import AttentionOptions, LMConfig, MambaOptions, make_mixer, sample_next
from longseq.core.mlp import Mlp
from longseq.core.norm import RMSNorm, add_norm
from longseq.core.registry import Pretrained
from longseq.speech.models.sampling import SamplingConfig

IGNORE = -100


@dataclass(kw_only=True)
class SpeechSSMConfig:
    d_model: int = 256
    n_layers: int = 6
    pattern: list[Literal["mamba", "swa"]] = field(default_factory=lambda: ["mamba", "mamba", "swa"])
    """Mixer kinds repeated over the layers (Griffin: two recurrent layers per local-attention layer)."""
    d_intermediate: int = 512
    """Gated-GELU MLP width after each mixer (rounded up to a multiple of 128, as `core.lm`)."""
    d_state: int = 16
    n_heads: int = 4
    attention_window: int = 128
    """Tokens (frames) each sliding-window attention layer sees, itself included."""
    norm_eps: float = 1e-5
    # tokens
    n_codebooks: int = 8
    codebook_size: int = 256
    codec: str = "codec"
    """Codec spec: ``encodec``, ``encodec-<kbps>kbps`` or a codec directory (relative: inside the checkpoint)."""
    # long form
    segment_seconds: float = 20.0
    """Training segment length (the paper: 240 s)."""
    window_seconds: float = 20.0
    """Codec decoding window (the paper: 30 s); a prompt must fit in one."""
    overlap_seconds: float = 2.0
    """Overlap of consecutive decoding windows, cross-faded (the paper: 4 s)."""

    def __post_init__(self):
        for name in ("d_model", "n_layers", "d_intermediate", "d_state", "n_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be positive; got {self.norm_eps}")
        if not self.pattern or any(kind not in ("mamba", "swa") for kind in self.pattern):
            raise ValueError(f"pattern must be a non-empty list of 'mamba' / 'swa'; got {self.pattern}")
        if self.n_layers % len(self.pattern):
            raise ValueError(f"a pattern of {len(self.pattern)} layers does not divide n_layers = {self.n_layers}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.n_codebooks < 1 or self.codebook_size < 2 or self.attention_window < 1:
            raise ValueError("need at least one codebook of two codes and an attention window of at least 1")
        if not 0 <= self.overlap_seconds < self.window_seconds / 2:
            raise ValueError("overlap_seconds must lie in [0, window_seconds / 2)")
        for name in ("segment_seconds", "window_seconds"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a positive number of seconds; got {getattr(self, name)}")

    @property
    def empty(self) -> int:
        """The id of "no code here" (delayed-grid positions before the first frame or after the last)."""
        return self.codebook_size

    def backbone_config(self) -> LMConfig:
        """The `core.lm` options the mixers are built from."""
        head_dim = self.d_model // self.n_heads
        return LMConfig(
            vocab_size=1,
            d_model=self.d_model,
            n_layer=self.n_layers,
            mixer=list(self.pattern),
            d_intermediate=self.d_intermediate,
            norm_epsilon=self.norm_eps,
            mamba=MambaOptions(d_state=self.d_state),
            attention=AttentionOptions(
                num_heads=self.n_heads, num_heads_kv=1, window=self.attention_window, rotary_emb_dim=head_dim
            ),
        )


def delay(codes: torch.Tensor, empty: int) -> torch.Tensor:
    """codes (b, k, t) -> the delayed grid (b, k, t + k - 1): grid[:, j, s] = codes[:, j, s - j], else ``empty``."""
    b, k, t = codes.shape
    grid = codes.new_full((b, k, t + k - 1), empty)
    for j in range(k):
        grid[:, j, j : j + t] = codes[:, j]
    return grid


def undelay(grid: torch.Tensor) -> torch.Tensor:
    """The inverse of `delay`: grid (b, k, t + k - 1) -> codes (b, k, t)."""
    k = grid.shape[1]
    t = grid.shape[2] - k + 1
    return torch.stack([grid[:, j, j : j + t] for j in range(k)], dim=1)


class SpeechSSM(Pretrained, nn.Module):
    """The hybrid speech LM: delayed-grid columns (b, k, s) -> logits (b, s, k, codebook_size) for the next column."""

    model_type = "speechssm"

    def __init__(self, config: SpeechSSMConfig, *, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        c, d = config, config.d_model
        self.config = config
        backbone = config.backbone_config()
        # One table for all codebooks: codebook j's code i (or empty) is row j * (codebook_size + 1) + i.
        self.embedding = nn.Embedding(c.n_codebooks * (c.codebook_size + 1), d, **dd)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.layers = nn.ModuleList(
            Block(
                make_mixer(kind, backbone, **dd),
                RMSNorm(d, eps=c.norm_eps, **dd),
                mlp=Mlp(d, backbone.mlp_width, activation="gelu_tanh", gated=True, bias=False, **dd),
                norm2=RMSNorm(d, eps=c.norm_eps, **dd),
                residual_in_fp32=True,
            )
            for kind in backbone.layer_kinds()
        )
        self.norm_f = RMSNorm(d, eps=c.norm_eps, **dd)
        self.head = nn.Linear(d, c.n_codebooks * c.codebook_size, bias=False, **dd)
        offsets = torch.arange(c.n_codebooks, device=device) * (c.codebook_size + 1)
        self.register_buffer("offsets", offsets, persistent=False)

    def embed(self, columns: torch.Tensor) -> torch.Tensor:
        """columns (b, k, s) of codes or ``empty`` -> the sum of their embeddings (b, s, d)."""
        return self.embedding(columns + self.offsets[:, None]).sum(1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., d) -> (..., k, codebook_size)."""
        return self.head(hidden).unflatten(-1, (self.config.n_codebooks, self.config.codebook_size))

    def forward(self, columns: torch.Tensor, states: list | None = None) -> torch.Tensor:
        """columns (b, k, s) -> logits (b, s, k, codebook_size); each column predicts the one after it.

        With ``states`` (from `init_states`): continue from them and leave them after the last column.
        """
        hidden, residual = self.embed(columns), None
        for i, layer in enumerate(self.layers):
            hidden, residual = layer(hidden, residual, state=None if states is None else states[i])
        return self.logits(add_norm(hidden, residual, self.norm_f, residual_in_fp32=True)[0])

    def step(self, column: torch.Tensor, states: list) -> torch.Tensor:
        """One column (b, k) -> logits (b, k, codebook_size) for the next; the states advance in place."""
        hidden, residual = self.embed(column[:, :, None])[:, 0], None
        for layer, state in zip(self.layers, states):
            hidden, residual = layer.step(hidden, residual, state)
        return self.logits(add_norm(hidden, residual, self.norm_f, residual_in_fp32=True)[0])

    def init_states(self, batch_size: int, *, device=None) -> list:
        """Fresh decoding states: fixed-size SSM states and ``attention_window``-slot KV caches."""
        return [layer.mixer.init_state(batch_size, device=device) for layer in self.layers]

    def loss(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced next-column cross-entropy and accuracy over a batch of segments codes (b, k, t)."""
        grid = delay(codes, self.config.empty)
        inputs = F.pad(grid[..., :-1], (1, 0), value=self.config.empty)
        logits = self(inputs)
        targets = grid.transpose(1, 2).masked_fill(grid.transpose(1, 2) == self.config.empty, IGNORE)
        loss = F.cross_entropy(logits.flatten(0, 2).float(), targets.flatten(), ignore_index=IGNORE)
        valid = targets != IGNORE
        accuracy = (logits.argmax(-1) == targets)[valid].float().mean()
        return loss, accuracy

    @torch.no_grad()
    def stream(
        self,
        prompt: torch.Tensor | None,
        *,
        n_frames: int,
        sampling: SamplingConfig,
        generator: torch.Generator | None = None,
    ) -> Iterator[torch.Tensor]:
        """Continue the prompt codes (1, k, Tp) (or start from nothing) by ``n_frames`` frames, yielding each
        frame's codes (k,) as soon as its last codebook is sampled. Memory is constant in ``n_frames``.

        Sampling: temperature, top-k and nucleus top-p over each codebook's distribution, greedy when top-p is 0
        (RAS does not apply).
        """
        c = self.config
        k, empty = c.n_codebooks, c.empty
        device = self.embedding.weight.device
        tp = 0 if prompt is None else prompt.shape[-1]
        states = self.init_states(1, device=device)
        # Columns 0..tp-1 hold only prompt codes; column s holds codebook j of frame s - j.
        known = torch.full((1, k, 0), empty, device=device) if prompt is None else delay(prompt.to(device), empty)
        logits = self(F.pad(known[..., :tp], (1, 0), value=empty), states)[:, -1]  # predicts column tp
        codebook = torch.arange(k, device=device)
        recent: list[torch.Tensor] = []  # the last k columns: frame f is complete in column f + k - 1
        last = tp + n_frames + k - 2
        for index in range(tp, last + 1):
            column = sample_next(
                logits[0],
                do_sample=sampling.top_p > 0,
                temperature=sampling.temperature,
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                generator=generator,
            )
            frame = index - codebook  # the frame each codebook of this column belongs to
            if index < known.shape[-1]:  # the prompt's last frames are not complete before column tp + k - 1
                column = torch.where(frame < tp, known[0, :, index], column)
            column = column.masked_fill((frame < 0) | (frame >= tp + n_frames), empty)  # as the grid of a segment
            recent = [*recent[1 - k :], column] if k > 1 else [column]
            if index - k + 1 >= tp:
                yield torch.stack([recent[j][j] for j in range(k)])
            if index < last:
                logits = self.step(column[None], states)

    def generate(
        self,
        prompt: torch.Tensor | None,
        *,
        max_frames: int,
        sampling: SamplingConfig,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Codes (1, k, max_frames) that continue the prompt (1, k, Tp): `stream` collected (short runs)."""
        frames = list(self.stream(prompt, n_frames=max_frames, sampling=sampling, generator=generator))
        return torch.stack(frames, dim=-1)[None]
